"""Which wall-clock dates and times an expression matches, searched forwards and backwards.

A compiled expression is a :class:`Pattern`: the allowed values of each field as sets and sorted
tuples. The searches here know nothing of time zones: they walk naive wall-clock times, and
:mod:`corequeue.core.cron.zones` turns those into instants.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta

#: The Gregorian calendar repeats every 400 years: an expression that matches no day in 400
#: consecutive years matches none ever, and a valid one never leaves a longer gap.
_HORIZON_YEARS = 400

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Pattern:
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


def times_after(pattern: Pattern, wall: datetime) -> int:
    """How many matching times of day come strictly after the time of day of ``wall``."""
    hours, minutes, seconds = pattern.hours, pattern.minutes, pattern.seconds
    count = (len(hours) - bisect_right(hours, wall.hour)) * len(minutes) * len(seconds)
    if wall.hour in hours:
        count += (len(minutes) - bisect_right(minutes, wall.minute)) * len(seconds)
        if wall.minute in minutes:
            count += len(seconds) - bisect_right(seconds, wall.second)
    return count


def next_wall(pattern: Pattern, after: datetime) -> datetime | None:
    """The first matching wall time strictly after ``after`` (naive), or None before year 10000."""
    moment = after.replace(microsecond=0) + _SECOND
    day, clock = moment.date(), (moment.hour, moment.minute, moment.second)
    while True:
        matching = next_date(pattern, day)
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


def prev_wall(pattern: Pattern, at: datetime) -> datetime | None:
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
    pattern: Pattern, hour: int, minute: int, second: int
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
    pattern: Pattern, hour: int, minute: int, second: int
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


def next_date(pattern: Pattern, start: date) -> date | None:
    """The first matching date on or after ``start``, searching no further than the horizon."""
    year, month, day = start.year, start.month, start.day
    last_year = min(start.year + _HORIZON_YEARS, date.max.year)
    while year <= last_year:
        if month in pattern.months:
            for candidate in range(day, _days_in_month(year, month) + 1):
                found = date(year, month, candidate)
                if matches_day(pattern, found):
                    return found
        year, month, day = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
    return None


def _prev_date(pattern: Pattern, start: date) -> date | None:
    """The last matching date on or before ``start``, searching no further than the horizon."""
    year, month, day = start.year, start.month, start.day
    first_year = max(start.year - _HORIZON_YEARS, date.min.year)
    while year >= first_year:
        if month in pattern.months:
            for candidate in range(day, 0, -1):
                found = date(year, month, candidate)
                if matches_day(pattern, found):
                    return found
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        if year >= 1:
            day = _days_in_month(year, month)
    return None


def matches_day(pattern: Pattern, day: date) -> bool:
    if day.month not in pattern.months:
        return False
    month_length = _days_in_month(day.year, day.month)
    in_month = pattern.days is None or (
        day.day in pattern.days or (pattern.last_day and day.day == month_length)
    )
    in_week = pattern.weekdays is None or _matches_weekday(pattern, day, month_length)
    return (in_month or in_week) if pattern.day_or else (in_month and in_week)


def _matches_weekday(pattern: Pattern, day: date, month_length: int) -> bool:
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
