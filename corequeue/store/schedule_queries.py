"""Queries for scheduled jobs: the durable state of each schedule, and firing an occurrence
exactly once across a fleet (a compare-and-set on the schedule's last occurrence, in the same
transaction as the job's insert)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from corequeue.store.queries import Store
from corequeue.store.records import NewJob
from corequeue.store.schema import jobs, schedules


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


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What the configuration says a schedule is (compared with the stored row)."""

    name: str
    job: str
    expression: str
    timezone: str


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What :func:`schedule_sync_many` found."""

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
    ``loaded_at``, default ``now``). Every write is a compare-and-set on the row as read, so
    workers syncing at the same time do each change once.

    * A new schedule is inserted, first seen ``now`` (its occurrences after ``now`` fire).
    * A schedule stored with this definition is marked alive (``updated_at``): workers
      configured with a schedule keep touching it, by syncing and by firing.
    * A schedule stored with another definition (expression, zone or job) is reset: first seen
      ``now``, never fired, so the old definition never fires again and the new one fires from
      ``now`` on. Unless the stored definition is newer than this configuration (first seen after
      ``loaded_at``: a worker started later wrote it) and alive: then it is left alone and
      reported in :attr:`SyncResult.deferred` (an old worker during a rolling deploy must not
      bring the old definition back).
    * A stored schedule that is not in ``specs`` and that no worker configured with it touched
      for ``stale_after`` is deleted. Not at once: workers may run different configurations
      (one imports a module declaring schedules, another does not), and a worker cannot tell
      "removed" from "someone else's".
    """
    loaded = now if loaded_at is None else loaded_at
    cutoff = now - stale_after
    wanted = {s.name: s for s in specs}
    deferred: set[str] = set()
    with store._errors(), store.engine.begin() as conn:
        rows = {r.name: r for r in conn.execute(sa.select(schedules))}
        for name in sorted(rows.keys() - wanted.keys()):
            unwanted = rows[name]
            if unwanted.updated_at < cutoff:
                conn.execute(
                    sa.delete(schedules).where(
                        schedules.c.name == name, schedules.c.updated_at == unwanted.updated_at
                    )
                )
        for name, spec in sorted(wanted.items()):
            row = rows.get(name)
            values = {"job": spec.job, "expression": spec.expression, "timezone": spec.timezone}
            if row is None:
                insert = (
                    pg_insert(schedules) if store.is_postgresql else sqlite_insert(schedules)
                ).values(name=name, first_seen_at=now, updated_at=now, **values)
                conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
                continue
            same_row = sa.and_(
                schedules.c.name == name,
                schedules.c.job == row.job,
                schedules.c.expression == row.expression,
                schedules.c.timezone == row.timezone,
            )
            if (row.job, row.expression, row.timezone) == (
                spec.job,
                spec.expression,
                spec.timezone,
            ):
                conn.execute(
                    sa.update(schedules)
                    .where(same_row, schedules.c.updated_at < now)
                    .values(updated_at=now)
                )
            elif row.first_seen_at > loaded and row.updated_at >= cutoff:
                deferred.add(name)
            else:
                conn.execute(
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
    return SyncResult(deferred=frozenset(deferred))


def schedule_list(store: Store) -> list[ScheduleRow]:
    """Every stored schedule with the state of the job its last occurrence enqueued."""
    query = (
        sa.select(schedules, jobs.c.state, jobs.c.run_at, jobs.c.started_at, jobs.c.finished_at)
        .select_from(schedules.outerjoin(jobs, jobs.c.id == schedules.c.last_job_id))
        .order_by(schedules.c.name)
    )
    with store._errors(), store.read() as conn:
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
            )
            for r in conn.execute(query)
        ]


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
    with store._errors(), store.engine.begin() as conn:
        won = conn.execute(
            sa.update(schedules)
            .where(
                schedules.c.name == spec.name,
                schedules.c.expression == spec.expression,
                schedules.c.timezone == spec.timezone,
                schedules.c.job == spec.job,
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
