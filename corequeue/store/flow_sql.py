"""The limited claim's statements (:mod:`corequeue.store.flow` runs them): the slots a claim
may use, the pages of ready jobs it reads, and its writes of the jobs and slots it takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from corequeue.core import claims, limits
from corequeue.store import schema
from corequeue.store.rows import jobs

slots = schema.limit_slots

#: The columns of the slot writes of a claim (:meth:`FlowQueries._slots_take`).
SLOT_WRITE_COLUMNS = ("b_kind", "b_key", "b_slot", "b_job", "b_attempt", "b_free")
#: Those writes on PostgreSQL as one statement: each column a list (an array parameter).
SLOT_WRITES_POSTGRESQL = sa.text(
    """
UPDATE corequeue_limit_slots AS s
SET job_id = w.job_id, attempt = w.attempt, started_at = :b_started, free_at = w.free_at
FROM unnest(
    CAST(:b_kind AS text[]), CAST(:b_key AS text[]), CAST(:b_slot AS integer[]),
    CAST(:b_job AS bigint[]), CAST(:b_attempt AS integer[]), CAST(:b_free AS timestamptz[])
) AS w(kind, key, slot, job_id, attempt, free_at)
WHERE s.kind = w.kind AND s.key = w.key AND s.slot = w.slot
"""
).bindparams(sa.bindparam("b_started", type_=schema.UTCDateTime))

#: The running jobs (id, attempt) among ``:b_ids`` (one text parameter, ``{1,2}``: binding a
#: list costs per item), each found by primary key; running: it holds a lease.
BUSY_POSTGRESQL = sa.text(
    "SELECT j.id, j.attempts FROM corequeue_jobs AS j "
    "WHERE j.id = ANY(CAST(:b_ids AS bigint[])) AND j.lease IS NOT NULL"
)


def slot_view_statement(*, postgresql: bool) -> sa.Select[Any]:
    """The slots of the keys ``v_keys`` a claim by worker ``v_worker`` at ``v_now`` may use
    (``limits.slot_is_free``, as SQL), with whether the worker's own chain holds each."""
    holder = jobs.alias("holder")
    # The worker running the slot's attempt (NULL: none runs it), found by primary key: a
    # condition on the worker here made the planner scan all of a worker's running jobs. A
    # job holds a lease exactly while it runs (ck_corequeue_jobs_lease_iff_running): testing
    # the lease, not "state = 'running'", keeps the planner off the running jobs' partial
    # index, which it scanned for every slot once ANALYZE had seen few running jobs.
    runner = (
        sa.select(holder.c.worker_id)
        .where(
            holder.c.id == slots.c.job_id,
            holder.c.lease.is_not(None),
            holder.c.attempts == slots.c.attempt,
        )
        .scalar_subquery()
    )
    mine = sa.func.coalesce(runner == sa.bindparam("v_worker", None, type_=sa.String), sa.false())
    usable = sa.or_(
        sa.and_(slots.c.kind == limits.CONCURRENCY, sa.or_(runner.is_(None), mine)),
        sa.and_(
            slots.c.kind == limits.RATE,
            sa.or_(
                slots.c.free_at.is_(None),
                slots.c.free_at <= sa.bindparam("v_now", None, type_=schema.UTCDateTime),
            ),
        ),
    )
    # On PostgreSQL the keys are one array parameter, so that the statement compiles once.
    keys = sa.bindparam("v_keys", None, type_=ARRAY(sa.String)) if postgresql else None
    stmt = (
        sa.select(slots.c.kind, slots.c.key, slots.c.slot, slots.c.job_id, slots.c.attempt)
        .add_columns(slots.c.period, slots.c.started_at, mine.label("mine"))
        .where(
            slots.c.key == sa.any_(keys)
            if keys is not None
            else slots.c.key.in_(sa.bindparam("v_keys", expanding=True)),
            usable,
        )
        .order_by(slots.c.kind, slots.c.key, slots.c.slot)
    )
    return stmt.with_for_update(skip_locked=True, of=slots) if postgresql else stmt


def name_clause(
    param: str, *, among: bool, postgresql: bool, names: Sequence[str] = ()
) -> sa.ColumnElement[bool]:
    """A claim's filter on job names (:class:`corequeue.core.claims.Names`), the names given
    as the parameter ``param`` (``names``: its value until a statement gives one): ``name =
    ANY(:param)`` (``among``) or ``name <> ALL(:param)`` on PostgreSQL, one array parameter,
    so that the statement compiles once; an expanding ``IN`` or ``NOT IN`` list on SQLite."""
    if postgresql:
        bound = sa.bindparam(param, list(names), type_=ARRAY(sa.String))
        return jobs.c.name == sa.any_(bound) if among else jobs.c.name != sa.all_(bound)
    listed: sa.BindParameter[Any] = sa.bindparam(param, list(names), expanding=True)
    return jobs.c.name.in_(listed) if among else jobs.c.name.not_in(listed)


def ready_statement(
    queues: Sequence[str],
    skipped: Sequence[str],
    among: bool | None = None,
    *,
    postgresql: bool = False,
) -> sa.Select[Any]:
    """The ready jobs (their ids, queues and limit keys) of ``queues`` (none: every queue) but
    not of ``skipped``, in claim order: ``r_limit`` of them from ``r_offset``, at ``r_now``;
    with ``among`` (not None), only the jobs the names ``r_names`` let through
    (:func:`name_clause`)."""
    ready = sa.select(jobs.c.id, jobs.c.queue, jobs.c.concurrency_key, jobs.c.rate_key).where(
        jobs.c.state == claims.CLAIMABLE_STATE.value,
        jobs.c.run_at <= sa.bindparam("r_now", None, type_=schema.UTCDateTime),
    )
    if queues:
        ready = ready.where(jobs.c.queue.in_(list(queues)))
    if skipped:
        ready = ready.where(jobs.c.queue.not_in(list(skipped)))
    if among is not None:
        ready = ready.where(name_clause("r_names", among=among, postgresql=postgresql))
    return (
        ready.order_by(*claim_order())
        .limit(sa.bindparam("r_limit", None, type_=sa.Integer))
        .offset(sa.bindparam("r_offset", None, type_=sa.Integer))
    )


def claim_order() -> list[sa.ColumnElement[Any]]:
    """:data:`corequeue.core.claims.CLAIM_ORDER` as an ORDER BY."""
    return [
        jobs.c[name].desc() if descending else jobs.c[name]
        for name, descending in claims.CLAIM_ORDER
    ]
