"""Queries for scheduled jobs: the durable state of each schedule, and firing an occurrence
exactly once across a fleet (a compare-and-set on the schedule's last occurrence, in the same
transaction as the job's insert)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from corequeue.core.schedules import ScheduleSpec, StoredSchedule, SyncStep, plan_sync
from corequeue.store.engine import translate_errors
from corequeue.store.records import NewJob
from corequeue.store.schema import jobs, schedules

if TYPE_CHECKING:
    from corequeue.store.queries import Store

__all__ = [
    "Fired",
    "ScheduleRow",
    "ScheduleSpec",
    "SyncResult",
    "schedule_fire",
    "schedule_list",
    "schedule_pause",
    "schedule_sync_many",
]


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    name: str
    job: str
    expression: str
    timezone: str
    first_seen_at: datetime
    last_occurrence: datetime | None
    last_job_id: int | None
    updated_at: datetime
    last_job_state: str | None = None
    last_job_run_at: datetime | None = None
    last_job_started_at: datetime | None = None
    last_job_finished_at: datetime | None = None
    paused: bool = False


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What :func:`schedule_sync_many` found (see :class:`corequeue.core.schedules.SyncPlan`)."""

    #: Configured schedules whose stored row holds another, newer definition (a worker started
    #: after this one with a changed expression, zone or job): this worker must not fire them.
    deferred: frozenset[str] = frozenset()


def schedule_sync_many(
    store: Store,
    specs: Sequence[ScheduleSpec],
    *,
    now: datetime,
    loaded_at: datetime | None = None,
    stale_after: timedelta = timedelta(seconds=90),
) -> SyncResult:
    """Make the stored schedules agree with ``specs`` (this worker's configuration, loaded at
    ``loaded_at``, default ``now``), as :func:`corequeue.core.schedules.plan_sync` decides.
    Every write is a compare-and-set on the row as read, so workers syncing at the same time
    do each change once."""
    with translate_errors(store.url), store.engine.begin() as conn:
        stored = {
            r.name: StoredSchedule(
                r.name, r.job, r.expression, r.timezone, r.first_seen_at, r.updated_at
            )
            for r in conn.execute(sa.select(schedules))
        }
        plan = plan_sync(stored, specs, now=now, loaded_at=loaded_at, stale_after=stale_after)
        for name, updated_at in plan.deletes:
            conn.execute(
                sa.delete(schedules).where(
                    schedules.c.name == name, schedules.c.updated_at == updated_at
                )
            )
        for step, spec, row in plan.steps:
            _apply_step(store, conn, step, spec, row, now)
    return SyncResult(deferred=plan.deferred)


def _apply_step(
    store: Store,
    conn: Connection,
    step: SyncStep,
    spec: ScheduleSpec,
    row: StoredSchedule | None,
    now: datetime,
) -> None:
    values = {"job": spec.job, "expression": spec.expression, "timezone": spec.timezone}
    if row is None:  # SyncStep.INSERT
        insert = (pg_insert(schedules) if store.is_postgresql else sqlite_insert(schedules)).values(
            name=spec.name, first_seen_at=now, updated_at=now, **values
        )
        conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
        return
    same_row = sa.and_(
        schedules.c.name == row.name,
        schedules.c.job == row.job,
        schedules.c.expression == row.expression,
        schedules.c.timezone == row.timezone,
    )
    if step is SyncStep.TOUCH:
        conn.execute(
            sa.update(schedules)
            .where(same_row, schedules.c.updated_at < now)
            .values(updated_at=now)
        )
        return
    conn.execute(  # SyncStep.RESET
        sa.update(schedules)
        .where(same_row, schedules.c.first_seen_at == row.first_seen_at)
        .values(
            first_seen_at=now,
            last_occurrence=None,
            last_job_id=None,
            updated_at=now,
            **values,
        )
    )


def schedule_list(store: Store) -> list[ScheduleRow]:
    """Every stored schedule with the state of the job its last occurrence enqueued."""
    query = (
        sa.select(schedules, jobs.c.state, jobs.c.run_at, jobs.c.started_at, jobs.c.finished_at)
        .select_from(schedules.outerjoin(jobs, jobs.c.id == schedules.c.last_job_id))
        .order_by(schedules.c.name)
    )
    with translate_errors(store.url), store.read() as conn:
        return [
            ScheduleRow(
                name=r.name,
                job=r.job,
                expression=r.expression,
                timezone=r.timezone,
                first_seen_at=r.first_seen_at,
                last_occurrence=r.last_occurrence,
                last_job_id=r.last_job_id,
                updated_at=r.updated_at,
                last_job_state=r.state,
                last_job_run_at=r.run_at,
                last_job_started_at=r.started_at,
                last_job_finished_at=r.finished_at,
                paused=bool(r.paused),
            )
            for r in conn.execute(query)
        ]


def schedule_pause(store: Store, name: str, *, paused: bool = True) -> bool:
    """Pause (or resume) a stored schedule: a paused one fires nothing; its last occurrence
    stays where it was, so on resume its ``missed`` policy decides what the pause missed.
    Returns False when no schedule of that name is stored (no worker has synced it yet)."""
    with translate_errors(store.url), store.engine.begin() as conn:
        changed = conn.execute(
            sa.update(schedules).where(schedules.c.name == name).values(paused=paused)
        ).rowcount
    return bool(changed)


@dataclass(frozen=True, slots=True)
class Fired:
    """An occurrence's compare-and-set won by this worker."""

    job_id: int | None  # the job enqueued (or the waiting one holding its unique key); None: none


def schedule_fire(
    store: Store,
    spec: ScheduleSpec,
    *,
    seen_last: datetime | None,
    seen_first_seen: datetime | None = None,
    new_last: datetime,
    job: NewJob | None,
    now: datetime,
) -> Fired | None:
    """Move the schedule's last occurrence from ``seen_last`` to ``new_last`` and, if that
    compare-and-set wins, insert ``job`` in the same transaction. The set also requires the
    stored definition to be ``spec`` and, given ``seen_first_seen``, the row to be the one read
    (not reset or re-created since). Returns the new job's id, or None when another worker got
    there first (or there was no job to insert)."""
    last_matches = (
        schedules.c.last_occurrence.is_(None)
        if seen_last is None
        else schedules.c.last_occurrence == seen_last
    )
    with translate_errors(store.url), store.engine.begin() as conn:
        won = conn.execute(
            sa.update(schedules)
            .where(
                schedules.c.name == spec.name,
                schedules.c.expression == spec.expression,
                schedules.c.timezone == spec.timezone,
                schedules.c.job == spec.job,
                schedules.c.paused == sa.false(),
                last_matches,
                *(
                    ()
                    if seen_first_seen is None
                    else (schedules.c.first_seen_at == seen_first_seen,)
                ),
            )
            .values(last_occurrence=new_last, updated_at=now)
        ).rowcount
        if not won:
            return None
        if job is None:
            return Fired(job_id=None)
        (inserted,) = store.job_insert_many([job], now=now, connection=conn)
        conn.execute(
            sa.update(schedules)
            .where(schedules.c.name == spec.name)
            .values(last_job_id=inserted.id)
        )
        return Fired(job_id=inserted.id)
