"""A schedule's occurrences as instants: forwards, backwards, and counted between two instants.

Wall-clock times come from :mod:`corequeue.core.cron.pattern`, their instants from
:mod:`corequeue.core.cron.zones`; this module puts them in order, each once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from heapq import heappop, heappush

from corequeue.core.cron.expression import CronSchedule
from corequeue.core.cron.pattern import matches_day, next_wall, prev_wall, times_after
from corequeue.core.cron.zones import (
    first_instant,
    instants_of,
    is_regular_day,
    midnight,
    offset_at,
    shows,
)

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def occurrences_between(
    schedule: CronSchedule, start: datetime, end: datetime
) -> Iterator[datetime]:
    """Yield the occurrences ``t`` with ``start < t <= end``, in increasing order, as aware UTC
    datetimes, each once. ``start`` and ``end`` must be aware (any zone)."""
    start, end = utc(start, "start"), utc(end, "end")
    for instant in _forward(schedule, start):
        if instant > end:
            return
        yield instant


def next_occurrence(schedule: CronSchedule, after: datetime) -> datetime:
    """Return the first occurrence strictly after ``after`` (aware), as an aware UTC datetime.

    Raises ValueError if ``after`` is naive, or if there is no occurrence before year 10000.
    """
    for instant in _forward(schedule, utc(after, "after")):
        return instant
    raise ValueError(
        f"schedule {schedule.name!r} has no occurrence after {after} before year 10000"
    )


def previous_occurrence(schedule: CronSchedule, at_or_before: datetime) -> datetime | None:
    """Return the last occurrence at or before ``at_or_before`` (aware), as an aware UTC datetime,
    or None if there is none (only near year 1). Raises ValueError if the argument is naive."""
    for instant in _backward(schedule, utc(at_or_before, "at_or_before")):
        return instant
    return None


def utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{name} must be an aware datetime, e.g. datetime.now(UTC); got {moment!r}"
        )
    return moment.astimezone(UTC)


def _forward(schedule: CronSchedule, after: datetime) -> Iterator[datetime]:
    """Occurrences strictly after ``after`` (aware UTC), increasing, each once.

    Wall times are visited in increasing order; each gives its instants (see ``instants_of``). The
    only instants that come out of order are the second passes through a repeated wall time of a
    wildcard schedule: they wait in ``pending`` until every earlier instant has been yielded.
    """
    pattern, zone = schedule._pattern, schedule._zone
    try:
        local = after.astimezone(zone).replace(tzinfo=None)  # its fold says which pass
        # The earliest wall time that may still have an instant after `after`: a wildcard
        # schedule inside the first pass of a fall-back will see the repeated times again; any
        # other schedule starts from the wall clock's own time (inside the second pass, the
        # times still to come follow the repeated ones, not the first pass's hour after them).
        offset = offset_at(zone, local, fold=1 if pattern.wildcard else local.fold)
        wall = (after + offset).replace(tzinfo=None)
    except OverflowError:
        return
    pending: list[datetime] = []
    previous: datetime | None = None
    while True:
        try:
            found = next_wall(pattern, wall)
            if found is None:
                break
            wall = found
            instants = instants_of(zone, wall, every=pattern.wildcard)
        except OverflowError:
            break
        if not instants:
            continue
        first = instants[0]
        while pending and pending[0] < first:
            yield heappop(pending)
        for later in instants[1:]:
            if later > after:
                heappush(pending, later)
        if first > after and first != previous:
            previous = first
            yield first
    while pending:
        yield heappop(pending)


def _backward(schedule: CronSchedule, at: datetime) -> Iterator[datetime]:
    """Occurrences at or before ``at`` (aware UTC), decreasing, each once: ``_forward`` mirrored."""
    pattern, zone = schedule._pattern, schedule._zone
    try:
        local = at.astimezone(zone).replace(tzinfo=None)
        # The latest wall time that may have an instant at or before `at`: inside the second pass
        # of a fall-back, the rest of the repeated times were already seen in the first pass.
        wall = (at + offset_at(zone, local, fold=0)).replace(tzinfo=None)
        found = prev_wall(pattern, wall)
    except OverflowError:
        return
    pending: list[tuple[timedelta, datetime]] = []  # a max-heap: keyed by time before the epoch
    previous: datetime | None = None
    while found is not None:
        wall = found
        try:
            instants = instants_of(zone, wall, every=pattern.wildcard)
        except OverflowError:
            instants = ()
        if instants:
            last = instants[-1]
            while pending and pending[0][1] > last:
                yield heappop(pending)[1]
            for earlier in instants[:-1]:
                if earlier <= at:
                    heappush(pending, (_EPOCH - earlier, earlier))
            if last <= at and last != previous:
                previous = last
                yield last
        try:
            found = prev_wall(pattern, wall - _SECOND)
        except OverflowError:
            break
    while pending:
        yield heappop(pending)[1]


def count_between(schedule: CronSchedule, start: datetime, end: datetime) -> int:
    """How many occurrences ``t`` have ``start < t <= end`` (aware UTC).

    Walks local days. On a regular day (24 hours long, one UTC offset) instants and wall times
    correspond one to one, so its occurrences are counted from the expression alone; a day with a
    DST change is counted one occurrence at a time. Fast for years of a schedule firing every
    second.
    """
    pattern, zone = schedule._pattern, schedule._zone
    total = 0
    day = start.astimezone(zone).date()
    try:
        opens = first_instant(zone, midnight(day))
        while opens <= end:
            closes = first_instant(zone, midnight(day + _DAY))
            # This day's instants are [opens, closes); count those in (low, high].
            low, high = max(start, opens - _TICK), min(end, closes - _TICK)
            if low < high:
                if not is_regular_day(zone, opens, closes):
                    total += _count_by_steps(schedule, low, high)
                elif matches_day(pattern, day):
                    after = times_after(pattern, shows(zone, low)) if low >= opens else None
                    upto = times_after(pattern, shows(zone, high)) if high < closes - _TICK else 0
                    total += (pattern.per_day if after is None else after) - upto
            day, opens = day + _DAY, closes
    except OverflowError:
        pass
    return total


def _count_by_steps(schedule: CronSchedule, start: datetime, end: datetime) -> int:
    count = 0
    for instant in _forward(schedule, start):
        if instant > end:
            break
        count += 1
    return count
