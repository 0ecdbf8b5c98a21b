"""Queries for scheduled jobs: the durable state of each schedule, and firing an occurrence
exactly once across a fleet (a compare-and-set on the schedule's last occurrence, in the same
transaction as the job's insert)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

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
    last_job_finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What the configuration says a schedule is (compared with the stored row)."""

    name: str
    job: str
    expression: str
    timezone: str


def schedule_sync_many(store: Store, specs: Sequence[ScheduleSpec], *, now: datetime) -> None:
    """Make the stored schedules match ``specs``: insert new ones, reset changed ones (a changed
    expression, zone or job starts afresh from ``now``: the old one never fires again), and
    delete the ones no longer configured."""
    wanted = {s.name: s for s in specs}
    with store._errors(), store.engine.begin() as conn:
        rows = {r.name: r for r in conn.execute(sa.select(schedules))}
        for name in rows.keys() - wanted.keys():
            conn.execute(sa.delete(schedules).where(schedules.c.name == name))
        for name, spec in wanted.items():
            row = rows.get(name)
            values = {"job": spec.job, "expression": spec.expression, "timezone": spec.timezone}
            if row is None:
                conn.execute(
                    sa.insert(schedules).values(
                        name=name, first_seen_at=now, updated_at=now, **values
                    )
                )
            elif (row.job, row.expression, row.timezone) != (
                spec.job,
                spec.expression,
                spec.timezone,
            ):
                conn.execute(
                    sa.update(schedules)
                    .where(schedules.c.name == name)
                    .values(first_seen_at=now, last_occurrence=None, updated_at=now, **values)
                )


def schedule_list(store: Store) -> list[ScheduleRow]:
    """Every stored schedule with the state of the job its last occurrence enqueued."""
    query = (
        sa.select(schedules, jobs.c.state, jobs.c.finished_at)
        .select_from(schedules.outerjoin(jobs, jobs.c.id == schedules.c.last_job_id))
        .order_by(schedules.c.name)
    )
    with store._errors(), store.engine.connect() as conn:
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
                last_job_finished_at=r.finished_at,
            )
            for r in conn.execute(query)
        ]


def schedule_fire(
    store: Store,
    spec: ScheduleSpec,
    *,
    seen_last: datetime | None,
    new_last: datetime,
    job: NewJob | None,
    now: datetime,
) -> int | None:
    """Move the schedule's last occurrence from ``seen_last`` to ``new_last`` and, if that
    compare-and-set wins, insert ``job`` in the same transaction. Returns the new job's id, or
    None when another worker got there first (or there was no job to insert)."""
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
            )
            .values(last_occurrence=new_last, updated_at=now)
        ).rowcount
        if not won or job is None:
            return None
        (inserted,) = store.job_insert_many([job], now=now, connection=conn)
        conn.execute(
            sa.update(schedules)
            .where(schedules.c.name == spec.name)
            .values(last_job_id=inserted.id)
        )
        return inserted.id
