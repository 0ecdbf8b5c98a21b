"""Cron due-times: when a schedule's occurrences fall, and which one to enqueue now.

Everything that decides when a schedule fires lives here: validating a schedule, listing the
occurrences of its expression in its time zone (across DST changes), and the catch-up decision
:func:`due`. This module never reads the clock, never touches the database, never sleeps and never
draws a random number: ``now`` and the stored state are arguments, so every worker of a fleet that
asks the same question (with the same time zone database) gets the same answer. Instants go in and
come out as aware UTC datetimes.

Expressions are croniter's syntax, read by croniter and then iterated here, in local wall-clock
time, so that DST is handled by the rule below rather than by croniter:

* five fields ``minute hour day-of-month month day-of-week``, and an optional sixth field for
  **seconds, written last** (croniter's default, ``second_at_beginning=False``):
  ``* * * * * */2`` fires every two seconds, ``0 3 * * * 30`` at 03:00:30 (and
  ``*/2 * * * * *`` every second of every even minute: seconds are not the first field);
* ``@hourly``, ``@daily`` (= ``@midnight``), ``@weekly`` (Sunday), ``@monthly``, ``@yearly``
  (= ``@annually``);
* ``*``, lists, ranges, steps over ranges exactly as cron defines them (``5-59/15`` is 5, 20, 35,
  50; ``a-a`` is the single value ``a``), names of months and days (``jan``, ``mon-fri``), Sunday as
  0 or 7, ``L`` (last day of the month), ``fri#2`` (second Friday), ``L5`` (last Friday);
* when both day fields are restricted a day matches if **either** does (classic cron, croniter's
  ``day_or=True``; ``*/2`` counts as restricted); when one of them is ``*`` the other one decides;
* refused, with a :class:`~corequeue.core.errors.ConfigError`: a 7th (year) field, ``H`` and ``R``
  (hashed and random values would differ between workers), ``W`` (nearest weekday), and
  expressions that match no date at all (``0 0 30 2 *``).

Time zones and DST (the rule of Vixie cron and cronie). An expression is matched against the wall
clock of the schedule's zone. Like cron, it is a *fixed-time* schedule unless its minute or its hour
field starts with ``*`` (``0 * * * *``, ``*/30 * * * *``, ``@hourly``, ``* * * * * */2``), which
makes it a *wildcard* schedule.

* Fixed-time schedules fire once per matching wall-clock time, at the first instant the local
  clock reads that time or later. A wall time skipped by a spring-forward gap fires once, at the
  end of the gap, however long (``30 2 * * *`` in Europe/Paris on 2024-03-31 fires at 03:00 CEST);
  a wall time repeated by a fall-back fires once, at its first occurrence (the summer-time one).
* Wildcard schedules fire at every instant the local clock reads a matching time, so they keep
  their rhythm in real time: across a one-hour change no run is doubled or lost. In Europe/Paris
  ``*/30 * * * *`` fires every 30 real minutes across both changes (on 2024-03-31 at 01:30 CET then
  03:00 CEST; on 2024-10-27 at 02:00 and 02:30 CEST, then 02:00 and 02:30 CET, then 03:00 CET)
  and ``0 * * * *`` every real hour (23 runs on the short day, 25 on the long one; the wall time
  02:00 never shows on 2024-03-31 and shows twice, an hour apart, on 2024-10-27).
* Two wall times that land on the same instant fire once: occurrences are strictly increasing.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from heapq import heappop, heappush
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter

from corequeue.core.errors import ConfigError

MissedPolicy = Literal["skip", "latest"]

_MISSED_POLICIES: tuple[MissedPolicy, ...] = ("skip", "latest")

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: Field names, in croniter's order (the optional seconds field comes last), and what they accept.
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31 or L"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat (Sunday is 0 or 7), fri#2, L5"),
    ("second", "0-59"),
)

_SYNTAX = (
    "write 5 fields 'minute hour day-of-month month day-of-week' (and optionally a 6th, last, "
    "for seconds), e.g. '0 3 * * *', or one of @hourly, @daily, @weekly, @monthly, @yearly"
)

#: The Gregorian calendar repeats every 400 years: an expression that matches no day in 400
#: consecutive years matches none ever, and a valid one never leaves a longer gap.
_HORIZON_YEARS = 400

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_EQUAL_RANGE = re.compile(r"^([^-/#]+)-([^-/#]+)(?:/\d+)?$")
_HASHED_OR_RANDOM = re.compile(r"^[hr](?:$|[(/])", re.IGNORECASE)
_NEAREST_WEEKDAY = re.compile(r"^(?:\d+w|w\d+)$", re.IGNORECASE)


# --- schedules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pattern:
    """A compiled expression: the allowed values of each field, as plain sets and sorted tuples."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    days: frozenset[int] | None  # days of the month; None: any day
    last_day: bool  # L in day-of-month
    weekdays: frozenset[int] | None  # 0 = Sunday; None: any day of the week
    nth_weekdays: frozenset[tuple[int, int]]  # (weekday, n): its n-th of the month; n=-1: last
    day_or: bool  # both day fields restricted: a day matches if either does
    wildcard: bool  # minute or hour field starts with '*' (Vixie cron's MIN_STAR | HR_STAR)

    @property
    def per_day(self) -> int:
        """How many wall-clock times a matching day holds."""
        return len(self.hours) * len(self.minutes) * len(self.seconds)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A named cron schedule, valid by construction (an invalid one raises :class:`ConfigError`).

    ``expression`` is matched against the wall clock of ``timezone`` (an IANA name) by the rule in
    this module's docstring; ``missed`` is what :func:`due` does with occurrences missed while no
    worker ran. Build schedules with :func:`parse_schedule`.
    """

    name: str
    expression: str
    timezone: str = "UTC"
    missed: MissedPolicy = "skip"
    _pattern: _Pattern = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a schedule name must be a non-empty string, got {self.name!r}")
        prefix = f"schedule {self.name!r}"
        if not isinstance(self.expression, str):
            raise ConfigError(
                f"{prefix}: the cron expression must be a string such as '0 3 * * *', "
                f"got {self.expression!r}"
            )
        try:
            pattern = _compile(self.expression)
        except _ExpressionError as exc:
            raise ConfigError(
                f"{prefix}: invalid cron expression {self.expression!r}: {exc}; {_SYNTAX}"
            ) from None
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_zone", _zone(prefix, self.timezone))
        if self.missed not in _MISSED_POLICIES:
            raise ConfigError(
                f"{prefix}: missed must be 'skip' or 'latest', got {self.missed!r}; 'skip' (the "
                "default) lets occurrences missed while no worker ran go, 'latest' runs the most "
                "recent one once"
            )

    @property
    def is_wildcard(self) -> bool:
        """True if the minute or hour field starts with ``*``: it then follows elapsed time at
        DST changes instead of firing once per wall-clock time (see the module docstring)."""
        return self._pattern.wildcard


def parse_schedule(
    name: str, expression: str, timezone: str = "UTC", missed: str = "skip"
) -> CronSchedule:
    """Validate a schedule as the configuration gives it and return it.

    Raises :class:`ConfigError`, whose message starts with ``schedule 'NAME':`` and says what is
    wrong and how to fix it: an invalid cron expression (or one that matches no date), an unknown
    time zone, or a ``missed`` policy other than ``'skip'`` or ``'latest'``.
    """
    return CronSchedule(name, expression, timezone, cast(MissedPolicy, missed))


class _ExpressionError(Exception):
    """Why an expression is invalid (turned into a ConfigError naming the schedule)."""


def _compile(expression: str) -> _Pattern:
    text = expression.strip()
    text = _ALIASES.get(text.lower(), text)
    fields = text.split()
    if len(fields) not in (5, 6):
        if len(fields) == 7:
            raise _ExpressionError("7 fields: a year field is not supported")
        raise _ExpressionError(f"{len(fields)} field{'' if len(fields) == 1 else 's'}")
    fields = [_single_values(token) for token in fields]
    for index, token in enumerate(fields):
        _check_field(index, token, len(fields))
    try:
        expanded, nth = croniter.expand(" ".join(fields))
    except Exception as exc:  # croniter's errors are not all CroniterError
        raise _ExpressionError(_croniter_reason(exc)) from None

    def values(index: int, low: int, high: int) -> tuple[int, ...]:
        found = expanded[index]
        if "*" in found:
            return tuple(range(low, high + 1))
        return tuple(sorted(v for v in found if isinstance(v, int)))

    dom, dow = expanded[2], expanded[4]
    days = None if dom[0] == "*" else frozenset(v for v in dom if isinstance(v, int))
    weekdays: frozenset[int] | None = None
    nth_weekdays: set[tuple[int, int]] = set()
    if dow[0] != "*":
        plain = set()
        for value in dow:
            if not isinstance(value, int):
                continue
            if value in nth:
                nth_weekdays.update((value, n if isinstance(n, int) else -1) for n in nth[value])
            else:
                plain.add(value)
        weekdays = frozenset(plain)
    pattern = _Pattern(
        seconds=values(5, 0, 59) if len(fields) == 6 else (0,),
        minutes=values(0, 0, 59),
        hours=values(1, 0, 23),
        months=frozenset(values(3, 1, 12)),
        days=days,
        last_day="l" in dom,
        weekdays=weekdays,
        nth_weekdays=frozenset(nth_weekdays),
        day_or=days is not None and weekdays is not None,
        wildcard=fields[0].startswith("*") or fields[1].startswith("*"),
    )
    if _next_date(pattern, date(2000, 1, 1)) is None:
        raise _ExpressionError("it matches no date, so it would never fire")
    return pattern


def _single_values(token: str) -> str:
    """Rewrite equal ranges ``a-a`` and ``a-a/n`` as ``a``: croniter reads them as the whole field,
    cron as the single value ``a``."""
    parts = []
    for part in token.split(","):
        match = _EQUAL_RANGE.match(part)
        if match and match.group(1).lower() == match.group(2).lower():
            part = match.group(1)
        parts.append(part)
    return ",".join(parts)


def _check_field(index: int, token: str, count: int) -> None:
    name, allowed = _FIELDS[index]
    for part in token.split(","):
        if _HASHED_OR_RANDOM.match(part):
            raise _ExpressionError(
                f"the {name} field {token!r} uses H or R; hashed and random values are not "
                "supported, as every worker must compute the same times: write the value"
            )
        if index == 2 and _NEAREST_WEEKDAY.match(part):
            raise _ExpressionError(
                f"the {name} field {token!r} uses W (nearest weekday), which is not supported"
            )
    probe = ["*"] * count
    probe[index] = token
    try:
        croniter.expand(" ".join(probe))
    except Exception as exc:  # croniter's errors are not all CroniterError
        reason = _croniter_reason(exc)
        problem = "is out of range" if "out of" in reason else "is not valid"
        raise _ExpressionError(
            f"the {name} field {token!r} {problem} (allowed: {allowed})"
        ) from None


def _croniter_reason(exc: Exception) -> str:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return re.sub(r"^\[[^\]]*\]\s*", "", lines[-1])


def _zone(prefix: str, key: object) -> ZoneInfo:
    hint = "use an IANA time zone name such as 'UTC', 'Europe/Paris' or 'America/New_York'"
    if not isinstance(key, str) or not key or key == "localtime":
        raise ConfigError(f"{prefix}: unknown time zone {key!r}; {hint}")
    known = _known_zones()
    if known and key not in known:
        close = [k for k in known if k.lower() == key.lower()]
        advice = f"did you mean {close[0]!r}?" if close else hint
        raise ConfigError(f"{prefix}: unknown time zone {key!r}; {advice}")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"{prefix}: unknown time zone {key!r}; {hint}") from None


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    """The zone names of the installed time zone database (names are case-sensitive everywhere,
    even where the file system is not)."""
    return frozenset(available_timezones())


# --- occurrences ----------------------------------------------------------------------------


def occurrences_between(
    schedule: CronSchedule, start: datetime, end: datetime
) -> Iterator[datetime]:
    """Yield the occurrences ``t`` with ``start < t <= end``, in increasing order, as aware UTC
    datetimes, each once. ``start`` and ``end`` must be aware (any zone)."""
    start, end = _utc(start, "start"), _utc(end, "end")
    for instant in _forward(schedule, start):
        if instant > end:
            return
        yield instant


def next_occurrence(schedule: CronSchedule, after: datetime) -> datetime:
    """Return the first occurrence strictly after ``after`` (aware), as an aware UTC datetime.

    Raises ValueError if ``after`` is naive, or if there is no occurrence before year 10000.
    """
    for instant in _forward(schedule, _utc(after, "after")):
        return instant
    raise ValueError(
        f"schedule {schedule.name!r} has no occurrence after {after} before year 10000"
    )


def previous_occurrence(schedule: CronSchedule, at_or_before: datetime) -> datetime | None:
    """Return the last occurrence at or before ``at_or_before`` (aware), as an aware UTC datetime,
    or None if there is none (only near year 1). Raises ValueError if the argument is naive."""
    for instant in _backward(schedule, _utc(at_or_before, "at_or_before")):
        return instant
    return None


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{name} must be an aware datetime, e.g. datetime.now(UTC); got {moment!r}"
        )
    return moment.astimezone(UTC)


def _forward(schedule: CronSchedule, after: datetime) -> Iterator[datetime]:
    """Occurrences strictly after ``after`` (aware UTC), increasing, each once.

    Wall times are visited in increasing order; each gives its instants (see ``_instants``). The
    only instants that come out of order are the second passes through a repeated wall time of a
    wildcard schedule: they wait in ``pending`` until every earlier instant has been yielded.
    """
    pattern, zone = schedule._pattern, schedule._zone
    try:
        local = after.astimezone(zone).replace(tzinfo=None)
        # The earliest wall time that may still have an instant after `after`: a wildcard
        # schedule inside the first pass of a fall-back will see the repeated times again.
        offset = _offset(zone, local, fold=1 if pattern.wildcard else 0)
        wall = (after + offset).replace(tzinfo=None)
    except OverflowError:
        return
    pending: list[datetime] = []
    previous: datetime | None = None
    while True:
        try:
            found = _next_wall(pattern, wall)
            if found is None:
                break
            wall = found
            instants = _instants(zone, wall, every=pattern.wildcard)
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
        wall = (at + _offset(zone, local, fold=0)).replace(tzinfo=None)
        found = _prev_wall(pattern, wall)
    except OverflowError:
        return
    pending: list[tuple[timedelta, datetime]] = []  # a max-heap: keyed by time before the epoch
    previous: datetime | None = None
    while found is not None:
        wall = found
        try:
            instants = _instants(zone, wall, every=pattern.wildcard)
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
            found = _prev_wall(pattern, wall - _SECOND)
        except OverflowError:
            break
    while pending:
        yield heappop(pending)[1]


def _count_between(schedule: CronSchedule, start: datetime, end: datetime) -> int:
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
        opens = _first_instant(zone, _midnight(day))
        while opens <= end:
            closes = _first_instant(zone, _midnight(day + _DAY))
            # This day's instants are [opens, closes); count those in (low, high].
            low, high = max(start, opens - _TICK), min(end, closes - _TICK)
            if low < high:
                if not _is_regular_day(zone, opens, closes):
                    total += _count_by_steps(schedule, low, high)
                elif _matches_day(pattern, day):
                    after = _times_after(pattern, _shows(zone, low)) if low >= opens else None
                    upto = _times_after(pattern, _shows(zone, high)) if high < closes - _TICK else 0
                    total += (pattern.per_day if after is None else after) - upto
            day, opens = day + _DAY, closes
    except OverflowError:
        pass
    return total


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _times_after(pattern: _Pattern, wall: datetime) -> int:
    """How many matching times of day come strictly after the time of day of ``wall``."""
    hours, minutes, seconds = pattern.hours, pattern.minutes, pattern.seconds
    count = (len(hours) - bisect_right(hours, wall.hour)) * len(minutes) * len(seconds)
    if wall.hour in hours:
        count += (len(minutes) - bisect_right(minutes, wall.minute)) * len(seconds)
        if wall.minute in minutes:
            count += len(seconds) - bisect_right(seconds, wall.second)
    return count


def _count_by_steps(schedule: CronSchedule, start: datetime, end: datetime) -> int:
    count = 0
    for instant in _forward(schedule, start):
        if instant > end:
            break
        count += 1
    return count


def _is_regular_day(zone: ZoneInfo, midnight: datetime, next_midnight: datetime) -> bool:
    if next_midnight - midnight != _DAY:
        return False
    offset = midnight.astimezone(zone).utcoffset()
    return all(
        moment.astimezone(zone).utcoffset() == offset
        for moment in (midnight + _DAY / 2, next_midnight - _SECOND)
    )


# --- wall clock and instants ----------------------------------------------------------------


def _offset(zone: ZoneInfo, wall: datetime, fold: int) -> timedelta:
    offset = wall.replace(tzinfo=zone, fold=fold).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _shows(zone: ZoneInfo, instant: datetime) -> datetime:
    """The wall-clock time ``zone`` shows at ``instant`` (naive)."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _instants(zone: ZoneInfo, wall: datetime, *, every: bool) -> tuple[datetime, ...]:
    """The UTC instants at which a matching wall time fires, increasing.

    ``every`` (wildcard schedules): every instant at which the clock shows ``wall``: none in a
    gap, two in a fall-back. Otherwise (fixed-time schedules): the first instant at which the clock
    shows ``wall`` or later: its first pass, or the end of the gap that skips it.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if not every:
        return (_first_instant(zone, wall, first),)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return tuple(sorted({t for t in (first, second) if _shows(zone, t) == wall}))


def _first_instant(zone: ZoneInfo, wall: datetime, first: datetime | None = None) -> datetime:
    """The first instant at which the clock of ``zone`` shows ``wall`` or a later time."""
    if first is None:
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _shows(zone, first) == wall:
        return first
    # In a gap: fold=1 reads the wall time with the offset from before the change, which lands
    # before the change; fold=0 with the offset from after it. The change is in between.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _change(zone, min(before, first), max(before, first))


def _change(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The instant in (low, high] at which the UTC offset of ``zone`` stops being low's."""
    offset = low.astimezone(zone).utcoffset()
    while high - low > _SECOND:
        middle = low + timedelta(seconds=int((high - low).total_seconds()) // 2)
        if middle.astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return high


def _next_wall(pattern: _Pattern, after: datetime) -> datetime | None:
    """The first matching wall time strictly after ``after`` (naive), or None before year 10000."""
    moment = after.replace(microsecond=0) + _SECOND
    day, clock = moment.date(), (moment.hour, moment.minute, moment.second)
    while True:
        matching = _next_date(pattern, day)
        if matching is None:
            return None
        if matching != day:
            day, clock = matching, (0, 0, 0)
        found = _next_time(pattern, *clock)
        if found is not None:
            return datetime(day.year, day.month, day.day, *found)
        if day == date.max:
            return None
        day, clock = day + _DAY, (0, 0, 0)


def _prev_wall(pattern: _Pattern, at: datetime) -> datetime | None:
    """The last matching wall time at or before ``at`` (naive), or None after year 1."""
    day, clock = at.date(), (at.hour, at.minute, at.second)
    while True:
        matching = _prev_date(pattern, day)
        if matching is None:
            return None
        if matching != day:
            day, clock = matching, (23, 59, 59)
        found = _prev_time(pattern, *clock)
        if found is not None:
            return datetime(day.year, day.month, day.day, *found)
        if day == date.min:
            return None
        day, clock = day - _DAY, (23, 59, 59)


def _next_time(
    pattern: _Pattern, hour: int, minute: int, second: int
) -> tuple[int, int, int] | None:
    """The first matching time of day at or after hour:minute:second."""
    hours, minutes, seconds = pattern.hours, pattern.minutes, pattern.seconds
    h = bisect_left(hours, hour)
    if h < len(hours) and hours[h] == hour:
        m = bisect_left(minutes, minute)
        if m < len(minutes) and minutes[m] == minute:
            s = bisect_left(seconds, second)
            if s < len(seconds):
                return hour, minute, seconds[s]
            m += 1
        if m < len(minutes):
            return hour, minutes[m], seconds[0]
        h += 1
    if h < len(hours):
        return hours[h], minutes[0], seconds[0]
    return None


def _prev_time(
    pattern: _Pattern, hour: int, minute: int, second: int
) -> tuple[int, int, int] | None:
    """The last matching time of day at or before hour:minute:second."""
    hours, minutes, seconds = pattern.hours, pattern.minutes, pattern.seconds
    h = bisect_right(hours, hour) - 1
    if h >= 0 and hours[h] == hour:
        m = bisect_right(minutes, minute) - 1
        if m >= 0 and minutes[m] == minute:
            s = bisect_right(seconds, second) - 1
            if s >= 0:
                return hour, minute, seconds[s]
            m -= 1
        if m >= 0:
            return hour, minutes[m], seconds[-1]
        h -= 1
    if h >= 0:
        return hours[h], minutes[-1], seconds[-1]
    return None


def _next_date(pattern: _Pattern, start: date) -> date | None:
    """The first matching date on or after ``start``, searching no further than the horizon."""
    year, month, day = start.year, start.month, start.day
    last_year = min(start.year + _HORIZON_YEARS, date.max.year)
    while year <= last_year:
        if month in pattern.months:
            for candidate in range(day, _days_in_month(year, month) + 1):
                found = date(year, month, candidate)
                if _matches_day(pattern, found):
                    return found
        year, month, day = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
    return None


def _prev_date(pattern: _Pattern, start: date) -> date | None:
    """The last matching date on or before ``start``, searching no further than the horizon."""
    year, month, day = start.year, start.month, start.day
    first_year = max(start.year - _HORIZON_YEARS, date.min.year)
    while year >= first_year:
        if month in pattern.months:
            for candidate in range(day, 0, -1):
                found = date(year, month, candidate)
                if _matches_day(pattern, found):
                    return found
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        if year >= 1:
            day = _days_in_month(year, month)
    return None


def _matches_day(pattern: _Pattern, day: date) -> bool:
    if day.month not in pattern.months:
        return False
    month_length = _days_in_month(day.year, day.month)
    in_month = pattern.days is None or (
        day.day in pattern.days or (pattern.last_day and day.day == month_length)
    )
    in_week = pattern.weekdays is None or _matches_weekday(pattern, day, month_length)
    return (in_month or in_week) if pattern.day_or else (in_month and in_week)


def _matches_weekday(pattern: _Pattern, day: date, month_length: int) -> bool:
    weekday = day.isoweekday() % 7
    assert pattern.weekdays is not None
    if weekday in pattern.weekdays:
        return True
    for wanted, nth in pattern.nth_weekdays:
        if wanted == weekday:
            if nth == -1 and day.day + 7 > month_length:
                return True
            if nth == (day.day - 1) // 7 + 1:
                return True
    return False


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


# --- the decision ---------------------------------------------------------------------------


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
    now = _utc(now, "now")
    stored = None if last is None else _utc(last, "last")
    if stored is not None:
        since = stored
    else:
        since = now if first_seen is None else _utc(first_seen, "first_seen")
    upcoming = next_occurrence(schedule, since)
    if upcoming > now:
        return Due(enqueue=None, next_check=upcoming, skipped=0, last=stored)
    current = previous_occurrence(schedule, now)
    assert current is not None and current >= upcoming
    next_check = next_occurrence(schedule, now)
    if current == upcoming:
        return Due(enqueue=current, next_check=next_check, skipped=0, last=current)
    missed = _count_between(schedule, since, now)
    if schedule.missed == "latest":
        return Due(enqueue=current, next_check=next_check, skipped=missed - 1, last=current)
    return Due(enqueue=None, next_check=next_check, skipped=missed, last=current)
