"""The catch-up decision: what a scheduler tick enqueues for a schedule, given the last
occurrence it stored and ``now``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from corequeue.core.cron.expression import CronSchedule
from corequeue.core.cron.occurrences import (
    count_between,
    next_occurrence,
    previous_occurrence,
    utc,
)


@dataclass(frozen=True, slots=True)
class Due:
    """What the scheduler does for one schedule at one tick (see :func:`due`)."""

    #: The occurrence to enqueue now (the job's unique occurrence time), or None.
    enqueue: datetime | None
    #: When to look at this schedule again: the next occurrence after those considered (> now).
    next_check: datetime
    #: Occurrences that were due but are not enqueued, by the ``missed`` policy.
    skipped: int
    #: What to store as the schedule's last occurrence and pass as ``last`` next time: the
    #: occurrence enqueued or, under ``skip``, the most recent one skipped; unchanged (the ``last``
    #: given, None for a schedule never fired) when nothing was due. Store it even when
    #: ``enqueue`` is None, or a ``skip`` schedule that missed occurrences never fires again.
    last: datetime | None = None


def due(
    schedule: CronSchedule,
    *,
    last: datetime | None,
    now: datetime,
    first_seen: datetime | None = None,
) -> Due:
    """Decide what to enqueue for ``schedule`` at ``now``; the same arguments always give the same
    answer. All datetimes must be aware; results are aware UTC.

    ``last`` is the stored last occurrence (:attr:`Due.last` of the previous decision), None for a
    schedule that never fired; then ``first_seen`` (when the schedule was first stored; ``now``
    if None) stands in for it. ``last`` need not be an occurrence of the current expression (it may
    have changed): it is only a threshold. The occurrences considered are those in
    ``(last, now]``; none is ever later than ``now``, and for a never-fired schedule none is at
    or before ``first_seen``.

    * None is due: enqueue nothing; ``next_check`` is the next occurrence.
    * Exactly one is due (the normal case: a tick shortly after its time; an occurrence at
      exactly ``now`` is due): enqueue it, whatever the policy. It was not missed.
    * Two or more are due (missed while no worker ran, or a tick that came more than one period
      late): under ``latest``, enqueue the most recent one and skip the others; under ``skip``,
      enqueue none of them and fire again at the next occurrence after ``now``. ``skipped`` counts
      the occurrences not enqueued, and :attr:`Due.last` moves to the most recent one either way.

    So under ``skip`` an occurrence is enqueued only if a tick falls at or after it and before the
    next one: the scheduler must tick more often than the schedule's shortest interval. Workers
    store :attr:`Due.last` with a compare-and-set on the ``last`` they passed, so that a worker
    deciding from a stale ``last`` changes nothing.
    """
    now = utc(now, "now")
    stored = None if last is None else utc(last, "last")
    if stored is not None:
        since = stored
    else:
        since = now if first_seen is None else utc(first_seen, "first_seen")
    upcoming = next_occurrence(schedule, since)
    if upcoming > now:
        return Due(enqueue=None, next_check=upcoming, skipped=0, last=stored)
    current = previous_occurrence(schedule, now)
    assert current is not None and current >= upcoming
    next_check = next_occurrence(schedule, now)
    if current == upcoming:
        return Due(enqueue=current, next_check=next_check, skipped=0, last=current)
    missed = count_between(schedule, since, now)
    if schedule.missed == "latest":
        return Due(enqueue=current, next_check=next_check, skipped=missed - 1, last=current)
    return Due(enqueue=None, next_check=next_check, skipped=missed, last=current)
