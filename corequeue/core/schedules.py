"""The schedule-sync policy: how the stored schedules are made to agree with a worker's
configuration when workers may run different configurations at once (a rolling deploy, or
modules imported by some workers only). Pure: the store reads the rows, :func:`plan_sync`
decides, the store applies each step as a compare-and-set on the row as read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What the configuration says a schedule is (compared with the stored row)."""

    name: str
    job: str
    expression: str
    timezone: str


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """What the sync reads of a stored schedule."""

    name: str
    job: str
    expression: str
    timezone: str
    first_seen_at: datetime
    updated_at: datetime

    def same_definition(self, spec: ScheduleSpec) -> bool:
        return (self.job, self.expression, self.timezone) == (
            spec.job,
            spec.expression,
            spec.timezone,
        )


class SyncStep(StrEnum):
    INSERT = "insert"  # new: insert it, first seen now
    TOUCH = "touch"  # stored with this definition: mark it alive
    RESET = "reset"  # stored with another definition: take this one, first seen now, never fired


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What a sync must do, in this order: the deletes, then the steps."""

    #: Stored schedules to delete: (name, updated_at as read).
    deletes: tuple[tuple[str, datetime], ...]
    #: (step, the configured schedule, its stored row as read: None for INSERT), by name.
    steps: tuple[tuple[SyncStep, ScheduleSpec, StoredSchedule | None], ...]
    #: Configured schedules left alone: their stored row holds another, newer definition.
    deferred: frozenset[str]


def plan_sync(
    stored: Mapping[str, StoredSchedule],
    specs: Sequence[ScheduleSpec],
    *,
    now: datetime,
    loaded_at: datetime | None = None,
    stale_after: timedelta = timedelta(seconds=90),
) -> SyncPlan:
    """Decide how the ``stored`` schedules are made to agree with ``specs`` (a worker's
    configuration, loaded at ``loaded_at``, default ``now``).

    * A new schedule is inserted, first seen ``now`` (its occurrences after ``now`` fire).
    * A schedule stored with this definition is marked alive (``updated_at``): workers
      configured with a schedule keep touching it, by syncing and by firing.
    * A schedule stored with another definition (expression, zone or job) is reset: first seen
      ``now``, never fired, so the old definition never fires again and the new one fires from
      ``now`` on. Unless the stored definition is newer than this configuration (first seen after
      ``loaded_at``: a worker started later wrote it) and alive: then it is left alone and
      reported in :attr:`SyncPlan.deferred` (an old worker during a rolling deploy must not
      bring the old definition back).
    * A stored schedule that is not in ``specs`` and that no worker configured with it touched
      for ``stale_after`` is deleted. Not at once: workers may run different configurations
      (one imports a module declaring schedules, another does not), and a worker cannot tell
      "removed" from "someone else's".
    """
    loaded = now if loaded_at is None else loaded_at
    cutoff = now - stale_after
    wanted = {s.name: s for s in specs}
    deletes = tuple(
        (name, stored[name].updated_at)
        for name in sorted(stored.keys() - wanted.keys())
        if stored[name].updated_at < cutoff
    )
    steps: list[tuple[SyncStep, ScheduleSpec, StoredSchedule | None]] = []
    deferred: set[str] = set()
    for name, spec in sorted(wanted.items()):
        row = stored.get(name)
        if row is None:
            steps.append((SyncStep.INSERT, spec, None))
        elif row.same_definition(spec):
            steps.append((SyncStep.TOUCH, spec, row))
        elif row.first_seen_at > loaded and row.updated_at >= cutoff:
            deferred.add(name)
        else:
            steps.append((SyncStep.RESET, spec, row))
    return SyncPlan(deletes, tuple(steps), frozenset(deferred))
