"""A batch of attempt endings, and the other writes of a worker's running jobs: releases and
the check of which leases are gone.

On PostgreSQL a batch of endings is ONE statement (:data:`FINISH_POSTGRESQL`), a compare-and-set
in its WHERE (still running, same lease); on SQLite the endings go through the store's one
compare-and-set writer (:mod:`corequeue.store.writer`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corequeue.core import lifecycle
from corequeue.core.states import JobState, Outcome
from corequeue.store.base import StoreBase
from corequeue.store.driver import Compiled, micros
from corequeue.store.records import AttemptEnd, ClaimedJob
from corequeue.store.rows import attempt_row, attempts, error_line, jobs
from corequeue.store.writer import Write, leases_held, leases_statement, write_changes


def _at(micros: str) -> str:
    """SQL: the timestamptz ``micros`` microseconds after the epoch, exactly (whole seconds
    and the rest apart: a float8 holds every microsecond only until the year 2255)."""
    return (
        f"timestamptz 'epoch' + ({micros} / 1000000) * interval '1 second'"
        f" + ({micros} % 1000000) * interval '1 microsecond'"
    )


#: The outcome whose attempt is recorded on its job row alone, with no attempt row: a success
#: is final (no retry follows it), so the job row keeps that attempt for good (its number in
#: ``attempts``, its start, end, worker and result). ``attempt_list`` shows it with the rest.
#: One INSERT (and its foreign-key check) less per successful job, on the hottest path there is.
ON_JOB_ROW = Outcome.SUCCEEDED
#: The state of a job whose last attempt is kept on its row: where the core's table sends a
#: running job on that outcome (a state no transition leaves: tests/store holds that).
(ON_JOB_ROW_STATE,) = lifecycle.next_states(JobState.RUNNING, ON_JOB_ROW)


#: A batch of attempt endings in one round trip (PostgreSQL), by columns: each column is one
#: parameter, in this order, a PostgreSQL array literal of integers (``int``: "{1,NULL,3}") or
#: a JSON array of strings (``text``: quoting left to json.dumps), unnested into rows in SQL.
#: Times are integer microseconds since the epoch (exact). Building the columns is cheaper than
#: one JSON object per ending (json.dumps writes keys and floats slowly), and PostgreSQL reads
#: them as fast as json_to_recordset.
ENDING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "int"),
    ("lease", "text"),
    ("state", "text"),
    ("attempts", "int"),
    ("max_attempts", "int"),
    ("new_lease", "text"),
    ("run_at", "int"),
    ("finished_at", "int"),
    ("worker_losses", "int"),
    ("deferrals", "int"),
    ("result", "text"),
    ("error", "text"),
    ("number", "int"),
    ("outcome", "text"),
    ("worker_id", "text"),
    ("started_at", "int"),
    ("ended_at", "int"),
    ("error_type", "text"),
    ("error_message", "text"),
    ("traceback", "text"),
    ("rule", "text"),
)


#: The columns only an attempt row takes (the job row takes the rest).
_ATTEMPT_ROW_ONLY = frozenset(
    {"number", "outcome", "worker_id", "ended_at", "error_type", "error_message", "traceback"}
)


def _ending_row(e: AttemptEnd, ended: int | None) -> tuple[Any, ...]:
    """The values of ``e`` in the order of ENDING_COLUMNS (one tuple per ending: cheaper than a
    function call per value). ``ended``: ``e.finished_at`` in microseconds."""
    c = e.change
    return (
        e.job_id,
        e.lease,
        c.state,
        c.attempts,
        c.max_attempts,
        c.lease,
        micros(c.run_at),
        ended if c.finished_at is e.finished_at else micros(c.finished_at),
        c.worker_losses,
        c.deferrals,
        e.result,
        error_line(e),
        e.attempt,
        e.outcome,
        e.worker_id,
        micros(e.started_at),
        ended,
        e.error_type,
        e.error_message,
        e.traceback,
        e.rule,
    )


def _ending_column(name: str, kind: str) -> str:
    if kind == "int":
        return f"CAST(:{name} AS bigint[])"
    # In the JSON array's order, by ORDINALITY: unnest pairs the columns up by position.
    return (
        f"ARRAY(SELECT t FROM json_array_elements_text(CAST(:{name} AS json))"
        " WITH ORDINALITY AS a(t, n) ORDER BY n)"
    )


def _ending_params(ends: Sequence[AttemptEnd]) -> dict[str, str]:
    """The parameters of FINISH_POSTGRESQL for ``ends``: one per column of ENDING_COLUMNS.
    A column with no value in the whole batch (a batch of successes has no errors) is sent
    empty: unnest pads a shorter array with NULLs, and PostgreSQL has nothing to parse."""
    rows = []
    when, ended = None, None
    on_rows_only = True  # no ending in the batch gets an attempt row (a batch of successes)
    for e in ends:
        if e.finished_at is not when:  # endings decided together share their end time
            when, ended = e.finished_at, micros(e.finished_at)
        rows.append(_ending_row(e, ended))
        on_rows_only = on_rows_only and e.outcome is ON_JOB_ROW
    params: dict[str, str] = {}
    for (name, kind), values in zip(ENDING_COLUMNS, zip(*rows, strict=True), strict=True):
        if on_rows_only and name in _ATTEMPT_ROW_ONLY:
            params[name] = "{}" if kind == "int" else "[]"  # nobody reads them
        elif kind == "int":
            if None in values:
                listed = ",".join(["NULL" if v is None else str(v) for v in values])
            else:  # the usual column: no NULL to write
                listed = ",".join(map(str, values))
            params[name] = "{" + listed + "}"
        elif values.count(None) == len(values):
            params[name] = "[]"
        else:  # str enums are strs: JSON writes their values
            params[name] = json.dumps(values, separators=(",", ":"))
    return params


#: The compare-and-set writes of a batch of endings as ONE statement: the UPDATE's WHERE is
#: the check (still running, same lease); only the attempts whose job row was updated get
#: their attempt row, except a success (``ON_JOB_ROW``). The job row takes the attempt's
#: start (when its child started it; the claim's time stays when that is unknown).
#:
#: ``locked`` takes the job rows' locks first, in ascending id (LockRows locks the rows in the
#: order they come, here the primary key's), like every other statement that locks several job
#: rows (an enqueue clearing stale unique holders, :func:`corequeue.store.unique.lock_stale`),
#: so two of them never wait for each other in a cycle (a deadlock PostgreSQL would break by
#: aborting one). The UPDATE names it only in a condition on no row (a one-time filter, run
#: before the UPDATE reads a row), so its own plan is the one it had without the locks (joining
#: ``locked`` changed that plan, and the prepared statement's generic one doubled its time).
#:
#: The job rows are found by primary key alone (``j.id = ANY(:id)``), as in
#: ``leases_statement``: a matching lease is the state check (ck_corequeue_jobs_lease_iff_running).
#: "j.state = 'running'" here let the planner, once ANALYZE had seen few running jobs (as
#: autovacuum's ANALYZE may), drive the join from the running jobs' partial index, dead entries
#: and all, and compare every running row with every ending: work growing as the square of the
#: batch (figures in benchmarks/README.md). ``j.id = ANY(:id)`` gives the planner the batch's
#: ids to look up whatever its statistics say (tests/store/test_stale_statistics.py).
FINISH_POSTGRESQL = sa.text(
    f"""
WITH v AS (
    SELECT * FROM unnest(
        {", ".join(_ending_column(name, kind) for name, kind in ENDING_COLUMNS)}
    ) AS v({", ".join(name for name, _ in ENDING_COLUMNS)})
),
locked AS MATERIALIZED (
    SELECT j.id FROM corequeue_jobs AS j
    WHERE j.id = ANY(CAST(:id AS bigint[]))
    ORDER BY j.id
    FOR UPDATE
),
done AS (
    UPDATE corequeue_jobs AS j
    SET state = v.state, attempts = v.attempts, max_attempts = v.max_attempts,
        lease = v.new_lease, run_at = {_at("v.run_at")},
        finished_at = {_at("v.finished_at")},
        started_at = COALESCE({_at("v.started_at")}, j.started_at),
        worker_losses = v.worker_losses, deferrals = v.deferrals,
        result = v.result, error = v.error
    FROM v
    WHERE j.id = ANY(CAST(:id AS bigint[])) AND j.id = v.id AND j.lease = v.lease
        AND (SELECT count(*) FROM locked) >= 0
    RETURNING j.id, v.lease
),
recorded AS (
    INSERT INTO corequeue_attempts (job_id, attempt, outcome, lease, worker_id, started_at,
                                    finished_at, error_type, error_message, traceback, rule)
    SELECT v.id, v.number, v.outcome, v.lease, v.worker_id,
           {_at("v.started_at")},
           {_at("v.ended_at")},
           v.error_type, v.error_message, v.traceback, v.rule
    FROM v JOIN done ON done.id = v.id AND done.lease = v.lease
    WHERE v.outcome <> '{ON_JOB_ROW.value}'
)
SELECT id FROM done
"""
)

#: EndingQueries.leases_gone_statement.
#: Each id's lease and state come from ONE probe by primary key (an array of the two);
#: OFFSET 0 keeps the planner from copying that sub-select into both the filter and the output.
_LEASES_GONE = sa.text(
    "SELECT i, p.ls[2] FROM ("
    "SELECT i, (SELECT ARRAY[j.lease, j.state] FROM corequeue_jobs AS j WHERE j.id = i) AS ls"
    " FROM unnest(CAST(:ids AS bigint[])) AS i OFFSET 0) AS p"
    " WHERE p.ls[1] IS DISTINCT FROM :lease"
)


class EndingQueries(StoreBase):
    """Endings, releases and lease checks of running jobs."""

    def job_finish_many(self, ends: Sequence[AttemptEnd]) -> list[int]:
        """Persist attempt endings. Returns the ids whose change was applied; an ending whose
        job is no longer running under its lease (rescued, cancelled) is refused."""
        if not ends:
            return []
        # One ending per attempt: a duplicate in the batch is refused like a late one.
        unique: list[AttemptEnd] = []
        seen: set[tuple[int, str]] = set()
        for e in ends:
            if (e.job_id, e.lease) not in seen:
                seen.add((e.job_id, e.lease))
                unique.append(e)
        with self._errors():
            if self.is_postgresql and self._driver is not None:
                # One statement for the whole batch, atomic by itself.
                params = _ending_params(unique)
                return [r[0] for r in self._driver_run(self._driver_finish, params)]
            with self._atomic() as conn:
                return finish_on(conn, unique, postgresql=self.is_postgresql)

    def job_transaction(self) -> Connection:
        """A connection with a transaction begun, for a running job's own writes
        (``corequeue.current_job().transaction()``): the caller records the attempt's ending
        on it (:meth:`job_finish_in`) and commits, or closes it (everything rolls back). On
        SQLite the transaction holds the database's write lock from here until it ends."""
        with self._errors():
            conn = self.engine.connect()
            try:
                conn.begin()
            except BaseException:
                conn.close()
                raise
        return conn

    def job_finish_in(self, conn: Connection, end: AttemptEnd) -> bool:
        """Record ``end`` on ``conn``, inside the transaction under way there (the job's own,
        from :meth:`job_transaction`), with the compare-and-set of :meth:`job_finish_many`;
        nothing is committed here. True when applied; False when the job no longer runs under
        the ending's lease (rescued as lost, cancelled, deleted)."""
        with self._errors():
            return bool(finish_on(conn, [end], postgresql=self.is_postgresql))

    @functools.cached_property
    def _driver_finish(self) -> Compiled:
        return self._compiled(FINISH_POSTGRESQL)

    def job_release_many(self, claimed: Sequence[ClaimedJob], *, now: datetime) -> list[int]:
        """Give back claimed jobs that never started: waiting again, attempt not counted."""
        if not claimed:
            return []
        with self._errors(), self._begin() as conn:
            pairs = [(j.id, j.lease) for j in claimed]
            held = leases_held(conn, pairs, lock=True, is_postgresql=self.is_postgresql)
            changes = [
                Write(
                    j.id,
                    JobState.RUNNING,
                    j.lease,
                    lifecycle.release(j.snapshot(), lease=j.lease, now=now),
                )
                for j in claimed
                if (j.id, j.lease) in held
            ]
            write_changes(conn, changes)
        return [c.job_id for c in changes]

    def job_leases_gone_many(self, pairs: Sequence[tuple[int, str]]) -> dict[int, JobState | None]:
        """The (job id, lease) pairs whose job no longer runs under that lease (finished,
        cancelled, rescued, deleted), usually none: each gone id with its job's state now
        (None when the job was deleted).

        The worker asks this about every job handed to its children, twice a second. On
        PostgreSQL only the gone ids come back, one statement per lease (a claim's jobs share
        one): thousands of queued jobs cost thousands of primary-key probes in the database,
        not thousands of rows to read."""
        if not pairs:
            return {}
        with self._errors(), self.read() as conn:
            if not self.is_postgresql:
                return _gone_sqlite(conn, pairs)
            by_lease: dict[str, list[int]] = {}
            for job_id, lease in pairs:
                by_lease.setdefault(lease, []).append(job_id)
            gone: dict[int, JobState | None] = {}
            for lease, ids in by_lease.items():
                for job_id, state in conn.execute(self.leases_gone_statement(ids, lease)):
                    gone[job_id] = None if state is None else JobState(state)
            return gone

    def leases_gone_statement(self, ids: Sequence[int], lease: str) -> sa.TextClause:
        """Which of ``ids`` no longer run under ``lease``, with their state, on PostgreSQL
        (tests EXPLAIN it): each id's lease looked up by primary key (a lease is held exactly
        while the job runs: see :meth:`leases_statement`), the ids as one array literal. A
        sub-select per id, not NOT EXISTS: the planner turns that into an anti-join, which it
        ran as a hash join over a scan of the whole table (it cannot know how few rows hold
        the lease)."""
        array = "{" + ",".join(map(str, ids)) + "}"
        return _LEASES_GONE.bindparams(ids=array, lease=lease)

    def leases_statement(self, ids: Sequence[int], *, lock: bool = False) -> sa.Select[Any]:
        """The leases of these jobs (tests EXPLAIN it): see
        :func:`corequeue.store.writer.leases_statement`."""
        return leases_statement(ids, lock=lock, is_postgresql=self.is_postgresql)


def finish_on(conn: Connection, ends: Sequence[AttemptEnd], *, postgresql: bool) -> list[int]:
    """Record ``ends`` (one per attempt) on ``conn`` in its transaction: each only where its
    job still runs under its lease. Returns the ids applied. The one place an ending is
    written, whether the worker records a batch or a job's own transaction records its
    success (the PostgreSQL driver fast path runs the same statement)."""
    if postgresql:
        return list(conn.execute(FINISH_POSTGRESQL, _ending_params(ends)).scalars())
    held = leases_held(conn, [(e.job_id, e.lease) for e in ends], lock=True, is_postgresql=False)
    applied = [e for e in ends if (e.job_id, e.lease) in held]
    write_changes(
        conn,
        [
            Write(
                e.job_id,
                JobState.RUNNING,
                e.lease,
                e.change,
                result=e.result,
                error=error_line(e),
                started_at=e.started_at,
            )
            for e in applied
        ],
    )
    rows = [attempt_row(e) for e in applied if e.outcome is not ON_JOB_ROW]
    if rows:
        conn.execute(sa.insert(attempts), rows)
    return [e.job_id for e in applied]


def _gone_sqlite(conn: Connection, pairs: Sequence[tuple[int, str]]) -> dict[int, JobState | None]:
    query = sa.select(jobs.c.id, jobs.c.lease, jobs.c.state)
    found = {r.id: r for r in conn.execute(query.where(jobs.c.id.in_([p[0] for p in pairs])))}
    gone: dict[int, JobState | None] = {}
    for job_id, lease in pairs:
        row = found.get(job_id)
        if row is None:
            gone[job_id] = None
        elif row.lease != lease:
            gone[job_id] = JobState(row.state)
    return gone
