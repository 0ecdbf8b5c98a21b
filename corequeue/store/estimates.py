"""Counts that stay cheap with millions of job rows.

Counting succeeded jobs exactly reads every one of them. Once the planner's statistics put a
PostgreSQL jobs table above :data:`ESTIMATE_ABOVE` rows, the monitoring reads count exactly
only what their indexes hold (waiting, running, failed and cancelled jobs: partial indexes)
and take the rest from the planner: a queue's rows as ``EXPLAIN`` estimates them, less its
exact counts. The queues listed are those with jobs in those indexes, and those common enough
to appear in the table's statistics (``pg_stats``). SQLite, and smaller tables, count exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corequeue.core.states import JobState, Outcome
from corequeue.store import schema

jobs, attempts = schema.jobs, schema.attempts

#: Above this many rows (by the planner's statistics), tables are counted by estimate.
ESTIMATE_ABOVE = 100_000

#: The states counted exactly at any size: each has a partial index of its own.
INDEXED_STATES = (JobState.REQUESTED, JobState.RUNNING, JobState.FAILED, JobState.CANCELLED)


def table_rows(conn: Connection, table: sa.Table) -> float | None:
    """PostgreSQL's estimate of ``table``'s rows (``pg_class.reltuples``); None on other
    databases, or before the table was ever analyzed."""
    if conn.dialect.name != "postgresql":
        return None
    query = sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)")
    rows = conn.execute(query, {"name": table.name}).scalar()
    return None if rows is None or rows < 0 else float(rows)


def large(conn: Connection, table: sa.Table) -> bool:
    """Whether ``table`` is counted by estimate (PostgreSQL, above :data:`ESTIMATE_ABOVE`)."""
    rows = table_rows(conn, table)
    return rows is not None and rows > ESTIMATE_ABOVE


def planned_rows(conn: Connection, query: sa.Select[Any]) -> int:
    """The rows PostgreSQL's planner expects ``query`` to return (``EXPLAIN``, nothing run)."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    plan = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {compiled}")).scalar_one()
    if isinstance(plan, str):  # a driver that does not decode json
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def common_values(conn: Connection, column: sa.Column[Any]) -> list[str]:
    """The most common values of ``column`` in the statistics of its table (PostgreSQL)."""
    query = sa.text(
        "SELECT most_common_vals::text::text[] FROM pg_stats "
        "WHERE schemaname = current_schema() AND tablename = :table AND attname = :column"
    )
    found = conn.execute(query, {"table": column.table.name, "column": column.name}).scalar()
    return [str(v) for v in found or ()]


def queue_state_counts(conn: Connection) -> tuple[list[tuple[str, str, int]], bool]:
    """(queue, state, jobs) for each queue and state that has jobs, and whether the
    succeeded counts are estimates (see the module's docstring)."""
    if not large(conn, jobs):
        query = sa.select(jobs.c.queue, jobs.c.state, sa.func.count()).group_by(
            jobs.c.queue, jobs.c.state
        )
        return [(q, s, int(n)) for q, s, n in conn.execute(query)], False
    exact: dict[tuple[str, str], int] = {}
    for state in INDEXED_STATES:  # one query each: each matches its partial index
        query = (
            sa.select(jobs.c.queue, sa.func.count()).where(_state_is(state)).group_by(jobs.c.queue)
        )
        for queue, n in conn.execute(query):
            exact[(queue, state.value)] = int(n)
    queues = {q for q, _ in exact} | set(common_values(conn, jobs.c.queue))
    out = [(q, s, n) for (q, s), n in exact.items()]
    for queue in sorted(queues):
        planned = planned_rows(conn, sa.select(jobs.c.id).where(jobs.c.queue == queue))
        rest = planned - sum(n for (q, _), n in exact.items() if q == queue)
        if rest > 0:
            out.append((queue, JobState.SUCCEEDED.value, rest))
    return sorted(out), True


def _state_is(state: JobState) -> sa.ColumnElement[bool]:
    """``state = '...'`` as a literal, so PostgreSQL matches it to the partial indexes when
    planning (a bound parameter would not, in a generic plan)."""
    if state in (JobState.FAILED, JobState.CANCELLED):
        # ix_corequeue_jobs_unsuccessful's predicate, then the one state.
        both = sa.text("state IN ('failed', 'cancelled')")
        return sa.and_(both, sa.literal_column(f"state = '{state.value}'"))
    return sa.literal_column(f"state = '{state.value}'")


def outcome_counts(conn: Connection, outcomes: Iterable[Outcome]) -> tuple[dict[str, int], bool]:
    """Attempt rows by outcome, and whether the counts are estimates (a large table: one
    ``EXPLAIN`` per outcome)."""
    if not large(conn, attempts):
        query = sa.select(attempts.c.outcome, sa.func.count()).group_by(attempts.c.outcome)
        return {o: int(n) for o, n in conn.execute(query)}, False
    out = {}
    for outcome in outcomes:
        where = attempts.c.outcome == sa.literal(outcome.value, literal_execute=True)
        out[outcome.value] = planned_rows(conn, sa.select(attempts.c.id).where(where))
    return out, True
