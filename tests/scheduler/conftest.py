"""Helpers for scheduler tests: definitions from configuration tables, the jobs schedules enqueued,
and Scheduler ticks at injected instants (no sleeping)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

import testing.schedule_jobs  # noqa: F401  (registers the jobs schedules enqueue)
from corequeue import scheduler
from corequeue.config import Settings
from corequeue.scheduler import ScheduleDefinition, Scheduler, load_definitions
from corequeue.store.queries import Store
from corequeue.store.schedules import ScheduleRow, schedule_list
from corequeue.store.schema import jobs
from testing.e2e import workers

__all__ = ["workers"]

TICK = "testing.schedule_jobs.Tick"


@pytest.fixture(autouse=True)
def no_python_schedules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Schedules declared with corequeue.schedule() in one test do not leak into the next."""
    monkeypatch.setattr(scheduler, "_DECLARED", {})
    yield


def at(hour: int, minute: int, second: int = 0, micro: int = 300_000, day: int = 1) -> datetime:
    """An instant on 2024-03-{day} (UTC); by default 0.3 s after the second, as real ticks are."""
    return datetime(2024, 3, day, hour, minute, second, micro, tzinfo=UTC)


def minute(hour: int, minute_: int, day: int = 1) -> datetime:
    """An exact minute (an occurrence of ``* * * * *``)."""
    return datetime(2024, 3, day, hour, minute_, tzinfo=UTC)


def definitions(tables: Mapping[str, Mapping[str, Any]]) -> list[ScheduleDefinition]:
    """The definitions a worker loads from ``[tool.corequeue.schedule.NAME]`` tables."""
    return load_definitions(Settings(schedule={k: dict(v) for k, v in tables.items()}))


def every_minute(**more: Any) -> dict[str, Any]:
    return {"job": "tick", "cron": "* * * * *", "args": ["m"], **more}


def instants(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    t = start
    while t <= end:
        yield t
        t += step


def run(
    schedulers: Iterable[Scheduler],
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(seconds=10),
) -> None:
    """Tick every scheduler at each instant from ``start`` to ``end``, in turn."""
    group = list(schedulers)
    for t in instants(start, end, step):
        for s in group:
            s.run_once(t)


def enqueued(store: Store, name: str) -> list[datetime]:
    """The run_at (= occurrence) of every job schedule ``name`` enqueued, in insertion order."""
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(jobs.c.run_at)
                .where(jobs.c.source == f"schedule {name}")
                .order_by(jobs.c.id)
            ).scalars()
        )


def stored(store: Store) -> dict[str, ScheduleRow]:
    return {r.name: r for r in schedule_list(store)}
