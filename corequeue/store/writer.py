"""The one compare-and-set writer: every :class:`~corequeue.core.lifecycle.Change` the store
persists row by row goes through :func:`write_changes`, which applies it only where the job
is still as it was read (its state and lease, and its attempt count when given). A late writer
changes nothing. (The PostgreSQL batch of endings, :mod:`corequeue.store.endings`, is the same
compare-and-set in one statement: its WHERE checks the lease and the running state.)"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from corequeue.core import lifecycle
from corequeue.core.states import JobState
from corequeue.store import schema

jobs = schema.jobs


class Write(NamedTuple):
    """A change to persist if job ``job_id`` is still in ``state`` under ``lease``."""

    job_id: int
    state: JobState  # expected
    lease: str | None  # expected (None: no lease)
    change: lifecycle.Change
    #: Expected attempt count, checked when given (a person's action on a waiting job).
    attempts: int | None = None
    #: An attempt ends: the job row takes its result, error and start. Otherwise (a person's
    #: action) those stay, but for a result the core says the change clears.
    ends_attempt: bool = True
    result: str | None = None
    error: str | None = None
    started_at: datetime | None = None


@functools.cache
def _statement(check_attempts: bool, ends_attempt: bool, clear_result: bool) -> sa.Update:
    where = [
        jobs.c.id == sa.bindparam("b_id"),
        jobs.c.state == sa.bindparam("b_state_old"),
        jobs.c.lease.is_not_distinct_from(sa.bindparam("b_lease", type_=sa.String)),
    ]
    if check_attempts:
        where.append(jobs.c.attempts == sa.bindparam("b_attempts_old"))
    values: dict[str, Any] = {
        "state": sa.bindparam("b_state"),
        "attempts": sa.bindparam("b_attempts"),
        "max_attempts": sa.bindparam("b_max_attempts"),
        "lease": sa.bindparam("b_lease_new"),
        "run_at": sa.bindparam("b_run_at", type_=schema.UTCDateTime),
        "finished_at": sa.bindparam("b_finished_at", type_=schema.UTCDateTime),
        "worker_losses": sa.bindparam("b_worker_losses"),
        "deferrals": sa.bindparam("b_deferrals"),
    }
    if ends_attempt:
        values["started_at"] = sa.func.coalesce(
            sa.bindparam("b_started_at", type_=schema.UTCDateTime), jobs.c.started_at
        )
        values["result"] = sa.bindparam("b_result")
        values["error"] = sa.bindparam("b_error")
    elif clear_result:
        values["result"] = None
    return sa.update(jobs).where(*where).values(values)


def _params(w: Write) -> dict[str, Any]:
    c = w.change
    return {
        "b_id": w.job_id,
        "b_state_old": w.state.value,
        "b_lease": w.lease,
        "b_attempts_old": w.attempts,
        "b_state": c.state.value,
        "b_attempts": c.attempts,
        "b_max_attempts": c.max_attempts,
        "b_lease_new": c.lease,
        "b_run_at": c.run_at,
        "b_finished_at": c.finished_at,
        "b_worker_losses": c.worker_losses,
        "b_deferrals": c.deferrals,
        "b_started_at": w.started_at,
        "b_result": w.result,
        "b_error": w.error,
    }


def write_changes(conn: Connection, writes: Sequence[Write]) -> int:
    """Apply each write whose job is still as expected. Returns how many rows changed."""
    groups: dict[tuple[bool, bool, bool], list[dict[str, Any]]] = {}
    for w in writes:
        key = (
            w.attempts is not None,
            w.ends_attempt,
            not w.ends_attempt and lifecycle.clears_result(w.change),
        )
        groups.setdefault(key, []).append(_params(w))
    changed = 0
    for key, params in groups.items():
        changed += conn.execute(_statement(*key), params).rowcount
    return changed


def leases_statement(ids: Sequence[int], *, lock: bool, is_postgresql: bool) -> sa.Select[Any]:
    """The leases of these jobs (tests EXPLAIN it, through ``Store.leases_statement``).

    By primary key alone: a job holds a lease exactly while it is running (the
    ck_corequeue_jobs_lease_iff_running constraint), so a matching lease is the state
    check. "state = 'running'" in the WHERE would let the planner pick the partial index
    of running jobs in a bitmap scan, which visits every dead entry in it (bitmap scans
    never mark them dead): after 100,000 jobs, 100,000 heap visits for each check."""
    if is_postgresql:  # one array parameter: no IN list of thousands to render
        array = sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.BigInteger))
        query = sa.select(jobs.c.id, jobs.c.lease).where(jobs.c.id == sa.any_(array))
        # Locked in ascending id, like every statement locking several job rows (no cycles).
        return query.order_by(jobs.c.id).with_for_update() if lock else query
    return sa.select(jobs.c.id, jobs.c.lease).where(jobs.c.id.in_(list(ids)))


def leases_held(
    conn: Connection, pairs: Sequence[tuple[int, str]], *, lock: bool, is_postgresql: bool
) -> set[tuple[int, str]]:
    """Which of the (job id, lease) pairs still hold their job (locked when ``lock``)."""
    query = leases_statement([p[0] for p in pairs], lock=lock, is_postgresql=is_postgresql)
    found = {(r.id, r.lease) for r in conn.execute(query)}
    return {p for p in pairs if p in found}
