"""Time zones and DST: the wall clock a zone shows at an instant, and the instants at which it
shows a wall-clock time (none in a spring-forward gap, two in a fall-back). The rule that decides
which of those instants a schedule fires at is in the package docstring."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from corequeue.core.errors import ConfigError

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


def zone_named(prefix: str, key: object) -> ZoneInfo:
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


def offset_at(zone: ZoneInfo, wall: datetime, fold: int) -> timedelta:
    offset = wall.replace(tzinfo=zone, fold=fold).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def shows(zone: ZoneInfo, instant: datetime) -> datetime:
    """The wall-clock time ``zone`` shows at ``instant`` (naive)."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def instants_of(zone: ZoneInfo, wall: datetime, *, every: bool) -> tuple[datetime, ...]:
    """The UTC instants at which a matching wall time fires, increasing.

    ``every`` (wildcard schedules): every instant at which the clock shows ``wall``: none in a
    gap, two in a fall-back. Otherwise (fixed-time schedules): the first instant at which the clock
    shows ``wall`` or later: its first pass, or the end of the gap that skips it.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if not every:
        return (first_instant(zone, wall, first),)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return tuple(sorted({t for t in (first, second) if shows(zone, t) == wall}))


def first_instant(zone: ZoneInfo, wall: datetime, first: datetime | None = None) -> datetime:
    """The first instant at which the clock of ``zone`` shows ``wall`` or a later time."""
    if first is None:
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if shows(zone, first) == wall:
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


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def is_regular_day(zone: ZoneInfo, midnight: datetime, next_midnight: datetime) -> bool:
    if next_midnight - midnight != _DAY:
        return False
    offset = midnight.astimezone(zone).utcoffset()
    return all(
        moment.astimezone(zone).utcoffset() == offset
        for moment in (midnight + _DAY / 2, next_midnight - _SECOND)
    )
