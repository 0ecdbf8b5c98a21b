"""Reading and validating a schedule: the cron expression (croniter's syntax, with the
refusals listed in the package docstring), its time zone and its ``missed`` policy."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, cast
from zoneinfo import ZoneInfo

from corequeue.core.cron.pattern import Pattern, next_date
from corequeue.core.cron.zones import zone_named
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

_EQUAL_RANGE = re.compile(r"^([^-/#]+)-([^-/#]+)(?:/\d+)?$")
_HASHED_OR_RANDOM = re.compile(r"^[hr](?:$|[(/])", re.IGNORECASE)
_NEAREST_WEEKDAY = re.compile(r"^(?:\d+w|w\d+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A named cron schedule, valid by construction (an invalid one raises :class:`ConfigError`).

    ``expression`` is matched against the wall clock of ``timezone`` (an IANA name) by the rule in
    the package docstring; ``missed`` is what :func:`due` does with occurrences missed while no
    worker ran. Build schedules with :func:`parse_schedule`.
    """

    name: str
    expression: str
    timezone: str = "UTC"
    missed: MissedPolicy = "skip"
    _pattern: Pattern = field(init=False, repr=False, compare=False)
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
        object.__setattr__(self, "_zone", zone_named(prefix, self.timezone))
        if self.missed not in _MISSED_POLICIES:
            raise ConfigError(
                f"{prefix}: missed must be 'skip' or 'latest', got {self.missed!r}; 'skip' (the "
                "default) lets occurrences missed while no worker ran go, 'latest' runs the most "
                "recent one once"
            )

    @property
    def is_wildcard(self) -> bool:
        """True if the minute or hour field starts with ``*``: it then follows elapsed time at
        DST changes instead of firing once per wall-clock time (see the package docstring)."""
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


def _compile(expression: str) -> Pattern:
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
        from croniter import croniter  # here: a worker without schedules never needs it

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
    pattern = Pattern(
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
    if next_date(pattern, date(2000, 1, 1)) is None:
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
        from croniter import croniter

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
