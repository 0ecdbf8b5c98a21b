"""Claiming: the UPDATE that hands a worker its next ready jobs, in claim order.

The statement is a translation of the core's claim rule (:mod:`corequeue.core.claims`: which
jobs are ready, in which order); tests/store holds the two together.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from corequeue.core import claims, limits
from corequeue.core.states import JobState
from corequeue.store import driver, flow, flow_sql, schema
from corequeue.store.driver import UTC_TYPE
from corequeue.store.records import ClaimedJob
from corequeue.store.rows import jobs

#: What a claim returns: the fields of ``ClaimedJob``, in its order, but its lease and start
#: (given after the first :data:`CLAIMED_FIRST`).
CLAIM_COLUMNS = [
    jobs.c.id,
    jobs.c.name,
    jobs.c.params,
    jobs.c.queue,
    jobs.c.priority,
    jobs.c.run_at,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.timeout,
    jobs.c.worker_losses,
    jobs.c.deferrals,
    jobs.c.created_at,
    jobs.c.source,
    jobs.c.headers,
]
CLAIMED_FIRST = 9
#: A claim statement's cache key: its queues, and its name filter (``Names.among``; None: none).
ClaimKey = tuple[tuple[str, ...], bool | None]


class _ArrayOf(ColumnElement[Any]):
    """PostgreSQL's ``ARRAY(SELECT ...)``: the claim's subquery, evaluated once."""

    inherit_cache = True
    _traverse_internals = [("select", InternalTraversal.dp_clauseelement)]

    def __init__(self, select: sa.Select[Any]) -> None:
        self.select = select


@compiles(_ArrayOf)
def _compile_array_of(element: _ArrayOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"ARRAY({compiler.process(element.select, **kw)})"


def _claim_order() -> list[ColumnElement[Any]]:
    """:data:`corequeue.core.claims.CLAIM_ORDER` as an ORDER BY."""
    return [
        jobs.c[name].desc() if descending else jobs.c[name]
        for name, descending in claims.CLAIM_ORDER
    ]


class ClaimQueries(flow.FlowQueries):
    """Claiming ready jobs (through the limits, :mod:`corequeue.store.flow`, once any exist)."""

    def job_claim_many(
        self,
        *,
        queues: Sequence[str],
        limit: int,
        lease: str,
        worker_id: str,
        now: datetime,
        chain_depth: int = 0,
        names: claims.Names | None = None,
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` ready jobs: highest priority, then earliest run_at, then oldest.

        Each claim starts an attempt (``attempts + 1``), as ``lifecycle.claim`` decides. Under
        concurrency limits, up to ``chain_depth`` jobs may share a slot as a chain (0: one job
        per slot): the caller runs each job after the ones claimed before it with a gate in
        common (``ClaimedJob.gates``), never beside them (:mod:`corequeue.core.limits`).
        ``names``: only the jobs whose names it lets through (None: any job; the worker's
        split by kind, :func:`corequeue.core.claims.by_kind`).
        """
        if limit <= 0:
            return []
        key = (tuple(queues), None if names is None else names.among)
        stmt = self._claim_statement(key)
        params: dict[str, Any] = {
            "c_limit": limit,
            "c_lease": lease,
            "c_worker": worker_id,
            "c_now": now,
        }
        if names is not None:
            params["c_names"] = list(names.names)
        # The RETURNING columns are ClaimedJob's first fields, in order (positional: reading a
        # row's fields by name costs more than the rest of the claim's Python work).
        make: Any = ClaimedJob  # rows are typed Row[Any]: mypy cannot count their fields
        with self._errors():
            if self.flow_active():
                ask = flow.Ask(key[0], limit, chain_depth, now, worker_id, names)
                claimed = self._claim_through_limits(ask, lease)
            elif self._driver is not None:
                rows = self._driver_claim(key, params)
                claimed = _claimed(rows, lease, now, self.engine.dialect)
            else:
                # One statement, atomic by itself: in autocommit on PostgreSQL (no BEGIN and
                # COMMIT round trips), a write transaction on SQLite.
                with self._atomic() as conn:
                    claimed = [
                        make(*r[:CLAIMED_FIRST], lease, now, *r[CLAIMED_FIRST:])
                        for r in conn.execute(stmt, params)
                    ]
        claimed.sort(key=claims.claim_key)
        return claimed

    def _claim_through_limits(self, ask: flow.Ask, lease: str) -> list[ClaimedJob]:
        """The claim once limits exist: one transaction that locks the slots it may use, lets
        the core grant, and writes the claims and the slots."""
        make: Any = ClaimedJob
        now = ask.now
        with self._begin() as conn:
            granted = self._claim_limited(conn, ask)
            if not granted:
                return []
            params = {"c_lease": lease, "c_worker": ask.worker_id, "c_now": now}
            if self.is_postgresql:
                # One text parameter (binding a list costs per item), and the statement
                # compiled once, its rows taken as the driver gives them (as the plain claim
                # does): the column types' conversions cost more per row than the rest.
                params["c_ids"] = "{" + ",".join([str(g.id) for g in granted]) + "}"
                rows: Any = driver.run_in(conn, self._limited_compiled, params)
                claimed = _claimed(rows, lease, now, self.engine.dialect)
            else:
                params["c_ids"] = [g.id for g in granted]
                rows = conn.execute(self._limited_update(), params)
                claimed = [make(*r[:CLAIMED_FIRST], lease, now, *r[CLAIMED_FIRST:]) for r in rows]
            self._slots_take(conn, granted, {job.id: job.attempts for job in claimed}, now)
        gates: dict[tuple[limits.Slot, ...], tuple[str, ...]] = {}
        chains = {g.id: g.chain for g in granted if g.chain}
        for job in claimed:
            chain = chains.get(job.id)
            if chain:
                job.gates = gates.get(chain) or gates.setdefault(chain, flow.gates(chain))
        return claimed

    @functools.cached_property
    def _limited_compiled(self) -> driver.Compiled:
        return self._compiled(self._limited_update())

    def _limited_update(self) -> sa.Update:
        """The claim of the jobs the limits granted (ids ``c_ids``) that are still waiting:
        another worker may have claimed one since it was read."""
        waiting = jobs.c.state == claims.CLAIMABLE_STATE.value
        if self.is_postgresql:  # skip rows another claim holds: no waits, no deadlocks
            # Each id looked up by primary key (LATERAL ... LIMIT 1: a nested loop whatever
            # the statistics say). A join of the list with the table let the planner hash
            # every ready job (the condition on the state matches the ready index) each claim,
            # and "id = ANY(list)" in a prepared statement's generic plan scanned the table.
            # The ids come as one text parameter: binding a list costs per item.
            ids = (
                sa.func.unnest(sa.cast(sa.bindparam("c_ids", type_=sa.Text), ARRAY(sa.BigInteger)))
                .table_valued("id")
                .render_derived(name="wanted")
            )
            row = jobs.alias("one")
            one = (
                sa.select(row.c.id)
                .where(row.c.id == ids.c.id, row.c.state == claims.CLAIMABLE_STATE.value)
                .limit(1)
                .with_for_update(skip_locked=True)
                .lateral("locked")
            )
            locked = sa.select(one.c.id).select_from(ids).join(one, sa.true())
            picked = jobs.c.id == sa.any_(_ArrayOf(locked))
        else:
            picked = sa.and_(jobs.c.id.in_(sa.bindparam("c_ids", expanding=True)), waiting)
        return (
            sa.update(jobs)
            .where(picked)
            .values(
                **_claim_values(
                    sa.bindparam("c_lease", None, type_=sa.String),
                    sa.bindparam("c_worker", None, type_=sa.String),
                    sa.bindparam("c_now", None, type_=schema.UTCDateTime),
                )
            )
            .returning(*CLAIM_COLUMNS)
        )

    def _claim_statement(self, key: ClaimKey) -> sa.Update:
        stmt = self._claim_statements.get(key)
        if stmt is None:
            # Built once per queue list and name filter with bound parameters: the worker's
            # hot path neither rebuilds nor recompiles it. Their placeholder values (None) let
            # the driver's copy render the queue list inline; each claim gives them all.
            queues, among = key
            stmt = self.claim_statement(
                queues=queues,
                limit=sa.bindparam("c_limit", None, type_=sa.Integer),
                lease=sa.bindparam("c_lease", None, type_=sa.String),
                worker_id=sa.bindparam("c_worker", None, type_=sa.String),
                now=sa.bindparam("c_now", None, type_=schema.UTCDateTime),
                names=None if among is None else claims.Names((), among),
            )
            self._claim_statements[key] = stmt
        return stmt

    def _driver_claim(self, key: ClaimKey, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The claim's rows through the driver (:attr:`_driver`), on PostgreSQL: an idle
        worker's pick-up latency is mostly this statement's round trip."""
        compiled = self._compiled_in(self._driver_claims, key, lambda: self._claim_statement(key))
        return self._driver_run(compiled, params)

    def claim_statement(
        self,
        *,
        queues: Sequence[str],
        limit: Any,
        lease: Any,
        worker_id: Any,
        now: Any,
        names: claims.Names | None = None,
    ) -> sa.Update:
        """The UPDATE that :meth:`job_claim_many` runs (tests EXPLAIN it).

        It walks the partial index ``ix_corequeue_jobs_ready`` in claim order (with ``names``,
        passing over the jobs whose names it does not let through: parameter ``c_names``). On
        PostgreSQL the ids are picked by ``id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP
        LOCKED))``, which keeps that plan however many finished rows pile up (``IN
        (subquery)`` can turn into a hash semi-join over the whole table).
        """
        # claims.is_ready, then claims.CLAIM_ORDER.
        ready = sa.select(jobs.c.id).where(jobs.c.state == claims.CLAIMABLE_STATE.value)
        ready = ready.where(jobs.c.run_at <= now)
        if queues:
            ready = ready.where(jobs.c.queue.in_(list(queues)))
        if names is not None:
            pg, among = self.is_postgresql, names.among
            named = flow_sql.name_clause("c_names", among=among, postgresql=pg, names=names.names)
            ready = ready.where(named)
        # Not a paused queue's job, nor one under a limit (those go through the limits).
        ready = ready.where(flow.unlimited_clause())
        ready = ready.order_by(*_claim_order()).limit(limit)
        if self.is_postgresql:
            picked = jobs.c.id == sa.any_(_ArrayOf(ready.with_for_update(skip_locked=True)))
        else:
            picked = jobs.c.id.in_(ready.scalar_subquery())
        # lifecycle.claim's decision, as one statement: one more attempt, under the new lease.
        return (
            sa.update(jobs)
            # No second "state = 'requested'" here: the rows were picked and locked in this
            # statement (SKIP LOCKED on PostgreSQL; SQLite writers are serialized), so their
            # state cannot change before the UPDATE; and that condition would match the
            # partial index's predicate and make the planner walk the whole ready index
            # (filtering on id) instead of fetching the picked ids by primary key.
            .where(picked)
            .values(**_claim_values(lease, worker_id, now))
            .returning(*CLAIM_COLUMNS)
        )


def _claimed(
    rows: Sequence[Sequence[Any]], lease: str, now: datetime, dialect: Any
) -> list[ClaimedJob]:
    """A claim's rows as the driver gives them (:data:`CLAIM_COLUMNS`) as claimed jobs."""
    make: Any = ClaimedJob  # rows are typed Sequence[Any]: mypy cannot count their fields
    claimed: list[ClaimedJob] = [
        make(*r[:CLAIMED_FIRST], lease, now, *r[CLAIMED_FIRST:]) for r in rows
    ]
    for job in claimed:  # as the column type converts it
        job.run_at = UTC_TYPE.process_result_value(job.run_at, dialect)  # type: ignore[assignment]
        job.created_at = UTC_TYPE.process_result_value(job.created_at, dialect)
    return claimed


def _claim_values(lease: Any, worker_id: Any, now: Any) -> dict[str, Any]:
    """lifecycle.claim's decision as SET values: one more attempt, under the new lease."""
    return {
        "state": JobState.RUNNING.value,
        "lease": lease,
        "worker_id": worker_id,
        "started_at": now,
        "attempts": jobs.c.attempts + 1,
    }
