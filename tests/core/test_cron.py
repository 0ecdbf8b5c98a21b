"""Cron due-times (corequeue.core.cron): pure tests, no clock, no database, no sleeping.

Read top to bottom, they document the rules: the cron syntax, the DST rule (fixed-time schedules
fire once per wall-clock time; wildcard ones follow elapsed time), and the catch-up decision `due`.
Times in expected values are written on the schedule's local wall clock with the zone's
abbreviation, so a fall-back's two 02:30s read as "02:30 CEST" and "02:30 CET".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from corequeue.core.cron import (
    CronSchedule,
    Due,
    due,
    next_occurrence,
    occurrences_between,
    parse_schedule,
    previous_occurrence,
)
from corequeue.core.errors import ConfigError, CorequeueError


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fires(expression: str, zone: str, start: datetime, end: datetime, fmt: str = "") -> list[str]:
    """The occurrences in (start, end], written on the schedule's wall clock."""
    schedule = parse_schedule("test", expression, zone)
    fmt = fmt or "%Y-%m-%d %H:%M %Z"
    return [
        t.astimezone(ZoneInfo(zone)).strftime(fmt)
        for t in occurrences_between(schedule, start, end)
    ]


def minutes(expression: str, start: datetime, end: datetime) -> list[int]:
    return [t.minute for t in occurrences_between(parse_schedule("test", expression), start, end)]


# --- syntax ---------------------------------------------------------------------------------


def test_a_step_over_a_range_starts_at_the_start_of_the_range() -> None:
    hour = (utc(2024, 1, 1, 10), utc(2024, 1, 1, 10, 59))
    assert minutes("5-59/15 * * * *", *hour) == [5, 20, 35, 50]
    assert minutes("*/15 * * * *", *hour) == [15, 30, 45]  # 10:00 is not after the start
    assert minutes("10-20/7 * * * *", *hour) == [10, 17]
    assert minutes("50/4 * * * *", *hour) == [50, 54, 58]  # "a/n" is "a-max/n"


def test_lists_ranges_and_single_values() -> None:
    day = (utc(2024, 1, 1), utc(2024, 1, 2))
    assert fires("0 9-17/4,20 * * *", "UTC", *day, fmt="%H:%M") == [
        "09:00",
        "13:00",
        "17:00",
        "20:00",
    ]
    assert fires("30 6 * * *", "UTC", *day, fmt="%H:%M") == ["06:30"]


def test_an_equal_range_is_one_value_as_in_cron() -> None:
    # croniter reads "5-5" and "jan-jan" as the whole field; cron, and corequeue, as one value.
    assert minutes("5-5 * * * *", utc(2024, 1, 1, 10), utc(2024, 1, 1, 11)) == [5]
    assert fires("0 0 1 jan-jan *", "UTC", utc(2024, 1, 1), utc(2025, 12, 31)) == [
        "2025-01-01 00:00 UTC"
    ]


def test_day_of_month_and_day_of_week_both_restricted_either_matches() -> None:
    # The classic cron OR rule: "the 13th, and every Friday", not "Friday the 13th".
    assert fires("0 0 13 * fri", "UTC", utc(2024, 9, 1), utc(2024, 9, 30), fmt="%d %a") == [
        "06 Fri",
        "13 Fri",
        "20 Fri",
        "27 Fri",
    ]
    assert fires("0 0 13 * fri", "UTC", utc(2024, 10, 1), utc(2024, 10, 31), fmt="%d %a") == [
        "04 Fri",
        "11 Fri",
        "13 Sun",
        "18 Fri",
        "25 Fri",
    ]


def test_a_star_step_in_a_day_field_counts_as_restricted() -> None:
    # As croniter (day_or=True) does, "*/10" restricts the day of month, so the OR rule applies:
    # the 1st, 11th, 21st and 31st, and every Monday. (Vixie cron would AND them.)
    assert fires("0 0 */10 * mon", "UTC", utc(2024, 7, 1), utc(2024, 7, 31, 1), fmt="%d") == [
        "08",
        "11",
        "15",
        "21",
        "22",
        "29",
        "31",
    ]


def test_when_one_day_field_is_a_star_the_other_one_decides() -> None:
    week = (utc(2024, 9, 1), utc(2024, 9, 8))
    assert fires("0 8 * * mon-fri", "UTC", *week, fmt="%a") == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert fires("0 8 2,4 * *", "UTC", *week, fmt="%a %d") == ["Mon 02", "Wed 04"]


def test_names_of_days_and_months_in_any_case() -> None:
    year = (utc(2024, 1, 1), utc(2024, 12, 31))
    assert fires("0 12 1 JAN,jul *", "UTC", *year, fmt="%b") == ["Jan", "Jul"]
    assert fires("0 12 * nov-feb sun#1", "UTC", *year, fmt="%b %d") == [
        "Jan 07",
        "Feb 04",
        "Nov 03",
        "Dec 01",
    ]
    assert fires("0 0 * * sat-mon", "UTC", utc(2024, 9, 1), utc(2024, 9, 8), fmt="%a") == [
        "Mon",
        "Sat",
        "Sun",
    ]


def test_sunday_is_0_or_7() -> None:
    week = (utc(2024, 9, 1), utc(2024, 9, 8, 1))
    assert fires("0 0 * * 0", "UTC", *week) == fires("0 0 * * 7", "UTC", *week)
    assert fires("0 0 * * 7", "UTC", *week, fmt="%a %d") == ["Sun 08"]


def test_the_31st_fires_only_in_months_that_have_one() -> None:
    assert fires("0 0 31 * *", "UTC", utc(2024, 1, 1), utc(2024, 12, 31, 1), fmt="%b") == [
        "Jan",
        "Mar",
        "May",
        "Jul",
        "Aug",
        "Oct",
        "Dec",
    ]


def test_last_day_of_the_month_and_last_weekday() -> None:
    first_half = (utc(2024, 1, 1), utc(2024, 6, 30, 1))
    assert fires("0 0 L * *", "UTC", *first_half, fmt="%m-%d") == [
        "01-31",
        "02-29",
        "03-31",
        "04-30",
        "05-31",
        "06-30",
    ]
    assert fires("0 0 * * L5", "UTC", *first_half, fmt="%m-%d %a") == [
        "01-26 Fri",
        "02-23 Fri",
        "03-29 Fri",
        "04-26 Fri",
        "05-31 Fri",
        "06-28 Fri",
    ]
    assert fires("0 0 * 9 fri#2", "UTC", utc(2024, 1, 1), utc(2025, 1, 1)) == [
        "2024-09-13 00:00 UTC"
    ]


def test_february_29th_fires_in_leap_years_only() -> None:
    leap_days = fires("0 0 29 2 *", "UTC", utc(2021, 1, 1), utc(2033, 1, 1), fmt="%Y")
    assert leap_days == ["2024", "2028", "2032"]
    # 2100 is not a leap year (divisible by 100), 2000 was (divisible by 400).
    assert fires("0 0 29 2 *", "UTC", utc(2095, 1, 1), utc(2105, 1, 1), fmt="%Y") == [
        "2096",
        "2104",
    ]
    assert next_occurrence(parse_schedule("t", "0 0 29 2 *"), utc(1999, 3, 1)) == utc(2000, 2, 29)


def test_aliases() -> None:
    start = utc(2024, 1, 1, 0, 30)
    after = {
        "@hourly": utc(2024, 1, 1, 1),
        "@daily": utc(2024, 1, 2),
        "@midnight": utc(2024, 1, 2),
        "@weekly": utc(2024, 1, 7),  # Sunday midnight
        "@monthly": utc(2024, 2, 1),
        "@yearly": utc(2025, 1, 1),
        "@annually": utc(2025, 1, 1),
        "@DAILY": utc(2024, 1, 2),
    }
    for alias, expected in after.items():
        assert next_occurrence(parse_schedule("t", alias), start) == expected, alias


def test_the_sixth_field_is_seconds_and_comes_last() -> None:
    # croniter's convention (second_at_beginning=False): minute hour dom month dow SECOND.
    every_two_seconds = fires(
        "* * * * * */2", "UTC", utc(2024, 1, 1, 12), utc(2024, 1, 1, 12, 0, 8), fmt="%H:%M:%S"
    )
    assert every_two_seconds == ["12:00:02", "12:00:04", "12:00:06", "12:00:08"]
    assert fires("0 3 * * * 30", "UTC", utc(2024, 1, 1), utc(2024, 1, 2), fmt="%H:%M:%S") == [
        "03:00:30"
    ]
    # So "*/2 * * * * *" is every second of every even minute, not every two seconds.
    schedule = parse_schedule("t", "*/2 * * * * *")
    assert next_occurrence(schedule, utc(2024, 1, 1, 12, 0, 0)) == utc(2024, 1, 1, 12, 0, 1)
    assert next_occurrence(schedule, utc(2024, 1, 1, 12, 0, 59)) == utc(2024, 1, 1, 12, 2, 0)


def test_five_field_expressions_fire_at_second_zero() -> None:
    assert next_occurrence(parse_schedule("t", "* * * * *"), utc(2024, 1, 1, 12, 0, 0, 1)) == utc(
        2024, 1, 1, 12, 1
    )


# --- validation -----------------------------------------------------------------------------


def error(name: str, expression: str, timezone: str = "UTC", missed: str = "skip") -> str:
    with pytest.raises(ConfigError) as caught:
        parse_schedule(name, expression, timezone, missed)
    assert isinstance(caught.value, CorequeueError)
    return str(caught.value)


SYNTAX = (
    "write 5 fields 'minute hour day-of-month month day-of-week' (and optionally a 6th, last, "
    "for seconds), e.g. '0 3 * * *', or one of @hourly, @daily, @weekly, @monthly, @yearly"
)


def test_an_invalid_expression_names_the_schedule_the_field_and_the_fix() -> None:
    assert error("nightly", "61 * * * *") == (
        "schedule 'nightly': invalid cron expression '61 * * * *': "
        f"the minute field '61' is out of range (allowed: 0-59); {SYNTAX}"
    )
    assert error("nightly", "0 3 * * funday") == (
        "schedule 'nightly': invalid cron expression '0 3 * * funday': the day-of-week field "
        f"'funday' is not valid (allowed: 0-7 or sun-sat (Sunday is 0 or 7), fri#2, L5); {SYNTAX}"
    )
    assert error("report", "*/0 * * * *").startswith(
        "schedule 'report': invalid cron expression '*/0 * * * *': "
        "the minute field '*/0' is not valid (allowed: 0-59); "
    )
    assert "the second field '60' is out of range (allowed: 0-59)" in error("t", "* * * * * 60")
    assert "the month field '13' is out of range" in error("t", "0 0 1 13 *")
    assert "the hour field '24' is out of range" in error("t", "0 24 * * *")


def test_wrong_number_of_fields() -> None:
    assert error("nightly", "0 3 * *") == (
        f"schedule 'nightly': invalid cron expression '0 3 * *': 4 fields; {SYNTAX}"
    )
    assert "7 fields: a year field is not supported" in error("nightly", "0 0 3 * * * 2030")
    assert "0 fields" in error("nightly", "   ")
    assert "1 field;" in error("nightly", "@often")


def test_expressions_that_would_differ_between_workers_or_never_fire_are_refused() -> None:
    assert "hashed and random values are not supported" in error("t", "H * * * *")
    assert "hashed and random values are not supported" in error("t", "0 R * * *")
    assert "W (nearest weekday), which is not supported" in error("t", "0 0 15W * *")
    assert error("t", "0 0 30 2 *") == (
        "schedule 't': invalid cron expression '0 0 30 2 *': "
        f"it matches no date, so it would never fire; {SYNTAX}"
    )


def test_an_unknown_time_zone_names_the_schedule() -> None:
    hint = "use an IANA time zone name such as 'UTC', 'Europe/Paris' or 'America/New_York'"
    assert error("nightly", "0 3 * * *", "Mars/Olympus") == (
        f"schedule 'nightly': unknown time zone 'Mars/Olympus'; {hint}"
    )
    # Zone names are case-sensitive everywhere, even on case-insensitive file systems.
    assert error("nightly", "0 3 * * *", "europe/paris") == (
        "schedule 'nightly': unknown time zone 'europe/paris'; did you mean 'Europe/Paris'?"
    )
    for bad in ("", "America", "../etc/passwd", "/etc/localtime", "localtime"):
        assert error("nightly", "0 3 * * *", bad).startswith(
            "schedule 'nightly': unknown time zone"
        )


def test_a_bad_missed_policy_names_the_schedule() -> None:
    assert error("nightly", "0 3 * * *", "UTC", "catch-up") == (
        "schedule 'nightly': missed must be 'skip' or 'latest', got 'catch-up'; 'skip' (the "
        "default) lets occurrences missed while no worker ran go, 'latest' runs the most recent "
        "one once"
    )


def test_a_schedule_is_valid_by_construction() -> None:
    with pytest.raises(ConfigError, match="schedule 'direct': invalid cron expression"):
        CronSchedule("direct", "every day")
    with pytest.raises(ConfigError, match="a schedule name must be a non-empty string"):
        parse_schedule("", "0 3 * * *")
    with pytest.raises(ConfigError, match="schedule 'x': the cron expression must be a string"):
        parse_schedule("x", 3)  # type: ignore[arg-type]
    schedule = parse_schedule("nightly", " 0 3 * * * ", "Europe/Paris", "latest")
    assert schedule == CronSchedule("nightly", " 0 3 * * * ", "Europe/Paris", "latest")
    assert repr(schedule) == (
        "CronSchedule(name='nightly', expression=' 0 3 * * * ', timezone='Europe/Paris', "
        "missed='latest')"
    )
    assert len({schedule, parse_schedule("nightly", " 0 3 * * * ", "Europe/Paris", "latest")}) == 1


cron_words = st.sampled_from(
    ["*", "*/5", "1-5", "5-1", "L", "l5", "mon", "jan", "#", "/", "-", ",", "?", "H", "R", "W",
     "0", "59", "60", "7", "fri#2", "fri#9", "3-3/2", "@daily", "@foo", "1,2", "x", "\x00", "٣"]
)  # fmt: skip


@given(st.one_of(st.text(max_size=40), st.lists(cron_words, max_size=8).map(" ".join)))
@settings(max_examples=300, deadline=None)
def test_any_text_is_a_schedule_or_a_config_error_naming_it(expression: str) -> None:
    try:
        schedule = parse_schedule("fuzz", expression)
    except ConfigError as exc:
        assert str(exc).startswith("schedule 'fuzz': ")
    else:
        assert next_occurrence(schedule, utc(2024, 1, 1)) > utc(2024, 1, 1)


@given(st.text(max_size=30))
@settings(deadline=None)
def test_any_zone_name_is_a_zone_or_a_config_error_naming_the_schedule(zone: str) -> None:
    try:
        parse_schedule("fuzz", "0 3 * * *", zone)
    except ConfigError as exc:
        assert str(exc).startswith("schedule 'fuzz': unknown time zone ")


# --- occurrences: the API -------------------------------------------------------------------


def test_next_is_strictly_after_and_previous_is_at_or_before() -> None:
    hourly = parse_schedule("t", "0 * * * *")
    assert next_occurrence(hourly, utc(2024, 1, 1, 10)) == utc(2024, 1, 1, 11)
    assert next_occurrence(hourly, utc(2024, 1, 1, 9, 59, 59, 999999)) == utc(2024, 1, 1, 10)
    assert previous_occurrence(hourly, utc(2024, 1, 1, 10)) == utc(2024, 1, 1, 10)
    assert previous_occurrence(hourly, utc(2024, 1, 1, 9, 59, 59)) == utc(2024, 1, 1, 9)


def test_instants_are_aware_utc_in_any_zone_given_and_naive_ones_are_refused() -> None:
    nightly = parse_schedule("t", "0 3 * * *", "Europe/Paris")
    paris_noon = datetime(2024, 7, 1, 12, tzinfo=ZoneInfo("Europe/Paris"))
    found = next_occurrence(nightly, paris_noon)
    assert found == utc(2024, 7, 2, 1) and found.tzinfo is UTC
    assert previous_occurrence(nightly, paris_noon) == utc(2024, 7, 1, 1)
    with pytest.raises(ValueError, match="after must be an aware datetime"):
        next_occurrence(nightly, datetime(2024, 7, 1))
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        due(nightly, last=None, now=datetime(2024, 7, 1))


def test_occurrences_between_excludes_the_start_and_includes_the_end() -> None:
    assert minutes("*/10 * * * *", utc(2024, 1, 1, 10), utc(2024, 1, 1, 10, 30)) == [10, 20, 30]
    assert minutes("*/10 * * * *", utc(2024, 1, 1, 10, 30), utc(2024, 1, 1, 10)) == []


# --- time zones and DST ---------------------------------------------------------------------
# Europe/Paris: 2024-03-31 02:00 CET -> 03:00 CEST (at 01:00 UTC);
#               2024-10-27 03:00 CEST -> 02:00 CET (at 01:00 UTC), 02:00-02:59 happens twice.
# America/New_York: 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST.
# Australia/Sydney: 2024-04-07 03:00 AEDT -> 02:00 AEST; 2024-10-06 02:00 AEST -> 03:00 AEDT.

PARIS_SPRING = (utc(2024, 3, 30, 22), utc(2024, 3, 31, 2, 10))
PARIS_AUTUMN = (utc(2024, 10, 26, 22), utc(2024, 10, 27, 2, 40))


def test_a_schedule_fires_on_its_zone_wall_clock() -> None:
    assert fires("0 9 * * *", "America/New_York", utc(2024, 1, 1), utc(2024, 1, 2), "%H:%M %Z") == [
        "09:00 EST"
    ]
    nine_utc = [utc(2024, 1, 1, 14), utc(2024, 7, 1, 13)]  # 09:00 EST, then 09:00 EDT
    schedule = parse_schedule("t", "0 9 * * *", "America/New_York")
    assert [next_occurrence(schedule, t - timedelta(hours=1)) for t in nine_utc] == nine_utc


def test_paris_spring_forward_fixed_time_in_the_gap_fires_once_at_the_end_of_the_gap() -> None:
    assert fires("30 2 * * *", "Europe/Paris", utc(2024, 3, 29), utc(2024, 4, 2)) == [
        "2024-03-29 02:30 CET",
        "2024-03-30 02:30 CET",
        "2024-03-31 03:00 CEST",  # 02:30 does not exist that night
        "2024-04-01 02:30 CEST",
    ]
    # Several wall times lost in the gap, and 03:00 itself, are one occurrence.
    assert fires("0,30 1-3 * * *", "Europe/Paris", *PARIS_SPRING, "%H:%M %Z") == [
        "01:00 CET",
        "01:30 CET",
        "03:00 CEST",  # for 02:00, 02:30 and 03:00
        "03:30 CEST",
    ]


def test_paris_fall_back_fixed_time_that_happens_twice_fires_once_the_first_time() -> None:
    assert fires("30 2 * * *", "Europe/Paris", utc(2024, 10, 25), utc(2024, 10, 29)) == [
        "2024-10-25 02:30 CEST",
        "2024-10-26 02:30 CEST",
        "2024-10-27 02:30 CEST",  # and not again at 02:30 CET
        "2024-10-28 02:30 CET",
    ]
    assert fires("0,30 1-3 * * *", "Europe/Paris", *PARIS_AUTUMN, "%H:%M %Z") == [
        "01:00 CEST",
        "01:30 CEST",
        "02:00 CEST",
        "02:30 CEST",
        "03:00 CET",  # the repeated 02:00 and 02:30 (CET) do not run again
        "03:30 CET",
    ]


def test_asked_inside_the_repeated_hour_a_fixed_time_schedule_finds_the_next_new_time() -> None:
    # 2040-11-04 in New York: 02:00 EDT becomes 01:00 EST, so 01:00-01:59 shows twice. A
    # scheduler asking during the second pass (after a restart, say) must get 02:00 EST, the
    # first time it has not run yet, not 02:30 (found by the occurrences property below).
    schedule = parse_schedule("t", "0,30 1-3 * * *", "America/New_York")
    for asked in (utc(2040, 11, 4, 5, 45), utc(2040, 11, 4, 6), utc(2040, 11, 4, 6, 15)):
        assert next_occurrence(schedule, asked) == utc(2040, 11, 4, 7)  # 02:00 EST
    assert next_occurrence(schedule, utc(2040, 11, 4, 5, 15)) == utc(2040, 11, 4, 5, 30)
    assert previous_occurrence(schedule, utc(2040, 11, 4, 6, 15)) == utc(2040, 11, 4, 5, 30)


def test_paris_hourly_follows_elapsed_time_across_both_changes() -> None:
    # "0 * * * *" is a wildcard schedule (its hour field starts with '*'): every real hour.
    assert fires("0 * * * *", "Europe/Paris", *PARIS_SPRING, "%H:%M %Z") == [
        "00:00 CET",
        "01:00 CET",
        "03:00 CEST",  # 02:00 never shows on the clock: no run, and no hole in real time
        "04:00 CEST",
    ]
    assert fires("0 * * * *", "Europe/Paris", *PARIS_AUTUMN, "%H:%M %Z") == [
        "01:00 CEST",
        "02:00 CEST",
        "02:00 CET",  # the clock shows 02:00 again an hour later: the next hourly run
        "03:00 CET",
    ]


def test_paris_every_30_minutes_follows_elapsed_time_across_both_changes() -> None:
    assert fires("*/30 * * * *", "Europe/Paris", *PARIS_SPRING, "%H:%M %Z") == [
        "23:30 CET",
        "00:00 CET",
        "00:30 CET",
        "01:00 CET",
        "01:30 CET",
        "03:00 CEST",
        "03:30 CEST",
        "04:00 CEST",
    ]
    autumn = fires("*/30 * * * *", "Europe/Paris", *PARIS_AUTUMN, "%H:%M %Z")
    assert autumn == [
        "00:30 CEST",
        "01:00 CEST",
        "01:30 CEST",
        "02:00 CEST",
        "02:30 CEST",
        "02:00 CET",
        "02:30 CET",
        "03:00 CET",
        "03:30 CET",
    ]
    schedule = parse_schedule("t", "*/30 * * * *", "Europe/Paris")
    times = list(occurrences_between(schedule, *PARIS_AUTUMN))
    assert {b - a for a, b in pairwise(times)} == {timedelta(minutes=30)}


def test_hourly_runs_23_times_on_the_short_day_and_25_on_the_long_one() -> None:
    hourly = parse_schedule("t", "0 * * * *", "Europe/Paris")
    paris = ZoneInfo("Europe/Paris")

    def runs_on(day: date) -> int:
        window = occurrences_between(hourly, utc(2024, 1, 1), utc(2024, 12, 31))
        return sum(1 for t in window if t.astimezone(paris).date() == day)

    assert runs_on(date(2024, 3, 30)) == 24
    assert runs_on(date(2024, 3, 31)) == 23
    assert runs_on(date(2024, 10, 27)) == 25
    daily = parse_schedule("t", "0 2 * * *", "Europe/Paris")
    assert len(list(occurrences_between(daily, utc(2024, 3, 30, 12), utc(2024, 4, 1, 12)))) == 2
    assert len(list(occurrences_between(daily, utc(2024, 10, 26, 12), utc(2024, 10, 28, 12)))) == 2


def test_new_york_both_changes() -> None:
    spring = (utc(2024, 3, 10, 5), utc(2024, 3, 10, 9))
    autumn = (utc(2024, 11, 3, 4), utc(2024, 11, 3, 8))
    assert fires("30 2 * * *", "America/New_York", *spring, "%H:%M %Z") == ["03:00 EDT"]
    assert fires("30 1 * * *", "America/New_York", *autumn, "%H:%M %Z") == ["01:30 EDT"]
    assert fires("0 * * * *", "America/New_York", *spring, "%H:%M %Z") == [
        "01:00 EST",
        "03:00 EDT",
        "04:00 EDT",
        "05:00 EDT",
    ]
    assert fires("0 * * * *", "America/New_York", *autumn, "%H:%M %Z") == [
        "01:00 EDT",
        "01:00 EST",
        "02:00 EST",
        "03:00 EST",
    ]
    assert fires("*/30 1 * * *", "America/New_York", *autumn, "%H:%M %Z") == [
        "01:00 EDT",  # "*/30 1" starts with '*': a wildcard schedule, so both 01:00 hours run
        "01:30 EDT",
        "01:00 EST",
        "01:30 EST",
    ]
    assert fires("0,30 1 * * *", "America/New_York", *autumn, "%H:%M %Z") == [
        "01:00 EDT",  # the same times written without '*': fixed-time, once each
        "01:30 EDT",
    ]


def test_sydney_southern_hemisphere_changes() -> None:
    autumn = (utc(2024, 4, 6, 14), utc(2024, 4, 6, 18))  # April: clocks go back
    spring = (utc(2024, 10, 5, 14), utc(2024, 10, 5, 18))  # October: clocks go forward
    assert fires("30 2 * * *", "Australia/Sydney", *autumn, "%m-%d %H:%M %Z") == [
        "04-07 02:30 AEDT"
    ]
    assert fires("30 2 * * *", "Australia/Sydney", *spring, "%m-%d %H:%M %Z") == [
        "10-06 03:00 AEDT"
    ]
    assert fires("*/30 * * * *", "Australia/Sydney", *autumn, "%H:%M %Z") == [
        "01:30 AEDT",
        "02:00 AEDT",
        "02:30 AEDT",
        "02:00 AEST",
        "02:30 AEST",
        "03:00 AEST",
        "03:30 AEST",
        "04:00 AEST",
    ]


def test_lord_howe_half_hour_change() -> None:
    # Australia/Lord_Howe moves by 30 minutes: 02:00 -> 02:30 on 2024-10-06, 02:00 -> 01:30 on
    # 2024-04-07 (its abbreviations are numeric offsets).
    spring = (utc(2024, 10, 5, 12), utc(2024, 10, 5, 17))
    assert fires("15 2 * * *", "Australia/Lord_Howe", *spring, "%H:%M %z") == ["02:30 +1100"]
    assert fires("0 * * * *", "Australia/Lord_Howe", *spring, "%H:%M %z") == [
        "23:00 +1030",
        "00:00 +1030",
        "01:00 +1030",
        "03:00 +1100",  # 02:00 is the first wall time skipped: 1.5 real hours after 01:00
        "04:00 +1100",
    ]
    autumn = (utc(2024, 4, 6, 12), utc(2024, 4, 6, 17))
    assert fires("45 1 * * *", "Australia/Lord_Howe", *autumn, "%H:%M %z") == ["01:45 +1100"]


def test_a_day_skipped_by_the_date_line_fires_its_fixed_times_once_when_it_ends() -> None:
    # Samoa skipped 2011-12-30 entirely: 29th 23:59:59 -> 31st 00:00 local.
    assert fires("0 9 * * *", "Pacific/Apia", utc(2011, 12, 28), utc(2012, 1, 1)) == [
        "2011-12-28 09:00 -10",
        "2011-12-29 09:00 -10",
        "2011-12-31 00:00 +14",  # for the 30th's 09:00, when the skipped day ends
        "2011-12-31 09:00 +14",
        "2012-01-01 09:00 +14",
    ]


def dst_changes(zone: ZoneInfo, year: int) -> list[datetime]:
    """The instants at which the zone's UTC offset changes during the year."""
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    while moment.year == year:
        later = moment + timedelta(hours=6)
        if moment.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            low, high = moment, later
            while high - low > timedelta(seconds=1):
                middle = low + timedelta(seconds=(high - low) // timedelta(seconds=2))
                same = middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            found.append(high)
        moment = later
    return found


#: Minute-level expressions with days unrestricted, and the wall times (hour, minute) they match.
WALL_RULES: dict[str, Callable[[int, int], bool]] = {
    "*/30 * * * *": lambda h, m: m % 30 == 0,
    "0 * * * *": lambda h, m: m == 0,
    "*/20 1-3 * * *": lambda h, m: m % 20 == 0 and 1 <= h <= 3,
    "30 2 * * *": lambda h, m: (h, m) == (2, 30),
    "0,30 1-3 * * *": lambda h, m: m in (0, 30) and 1 <= h <= 3,
    "0-59/10 0-23 * * *": lambda h, m: m % 10 == 0,
    "45 23,0 * * *": lambda h, m: m == 45 and h in (23, 0),
}


@pytest.mark.parametrize(
    ("zone_name", "year"),
    [
        ("Europe/Paris", 2024),
        ("America/New_York", 2024),
        ("Australia/Sydney", 2024),
        ("Australia/Lord_Howe", 2023),
        ("Europe/Dublin", 2022),  # tzdata models Irish winter time as a negative DST
        ("America/Santiago", 2023),  # changes at midnight
        ("America/Havana", 2019),  # changes at midnight
        ("Europe/London", 1996),
    ],
)
@pytest.mark.parametrize("expression", sorted(WALL_RULES))
def test_dst_rule_against_a_minute_by_minute_reading_of_the_clock(
    zone_name: str, year: int, expression: str
) -> None:
    """Wildcard schedules fire at every minute whose displayed wall time matches; fixed-time ones
    fire, for each matching wall time, at the first minute whose displayed time is that or later."""
    zone, rule = ZoneInfo(zone_name), WALL_RULES[expression]
    schedule = parse_schedule("t", expression, zone_name)
    changes = dst_changes(zone, year)
    assert len(changes) == 2
    for change in changes:
        start, end = change - timedelta(hours=4), change + timedelta(hours=4)
        clock = [start + timedelta(minutes=i) for i in range(1, 8 * 60 + 1)]
        shown = [t.astimezone(zone).replace(tzinfo=None, fold=0) for t in clock]
        if schedule.is_wildcard:
            expected = [t for t, w in zip(clock, shown, strict=True) if rule(w.hour, w.minute)]
        else:
            # Every wall time after the start's, up to the latest one the clock shows.
            span = int((max(shown) - shown[0]) / timedelta(minutes=1))
            walls = [shown[0] + timedelta(minutes=i) for i in range(1, span + 1)]
            walls = [w for w in walls if rule(w.hour, w.minute)]
            firsts = [next(t for t, s in zip(clock, shown, strict=True) if s >= w) for w in walls]
            expected = sorted(set(firsts))
        assert list(occurrences_between(schedule, start, end)) == expected


ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Europe/Dublin",
    "America/Santiago",
    "America/Havana",
    "America/St_Johns",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Pacific/Apia",
]
EXPRESSIONS = [
    "* * * * *",
    "0 * * * *",
    "*/30 * * * *",
    "30 2 * * *",
    "0,30 1-3 * * *",
    "*/20 1-3 * * *",
    "0 0 * * *",
    "59 23 * * *",
    "0 0 L * *",
    "0 12 * * mon-fri",
    "* * * * * */20",
    "0 2 * * * */30",
    "0 0 29 2 *",
    "@hourly",
    "0 9 13 * fri",
]
instants = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)


@given(st.sampled_from(EXPRESSIONS), st.sampled_from(ZONES), instants)
@settings(max_examples=400, deadline=None)
def test_occurrences_are_strictly_increasing_and_next_and_previous_agree(
    expression: str, zone: str, start: datetime
) -> None:
    schedule = parse_schedule("t", expression, zone)
    chain = [next_occurrence(schedule, start)]
    for _ in range(6):
        chain.append(next_occurrence(schedule, chain[-1]))
    assert chain[0] > start
    assert all(a < b for a, b in pairwise(chain))
    assert all(t.tzinfo is UTC and t.microsecond == 0 for t in chain)
    assert list(occurrences_between(schedule, start, chain[-1])) == chain
    assert previous_occurrence(schedule, chain[0] - timedelta(microseconds=1)) == (
        previous_occurrence(schedule, start)
    )
    for earlier, later in pairwise(chain):
        assert previous_occurrence(schedule, later) == later
        assert previous_occurrence(schedule, later - timedelta(microseconds=1)) == earlier
        middle = earlier + (later - earlier) / 2
        assert next_occurrence(schedule, middle) == later
        assert previous_occurrence(schedule, middle) == earlier


def token(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        number.map(str),
        st.integers(1, high - low + 1).map(lambda n: f"*/{n}"),
        st.tuples(number, number, st.integers(1, 9))
        .filter(lambda t: t[0] < t[1])
        .map(lambda t: f"{t[0]}-{t[1]}/{t[2]}"),
        st.lists(number, min_size=2, max_size=4).map(lambda v: ",".join(map(str, v))),
    )


cron_expressions = st.tuples(
    token(0, 59), token(0, 23), token(1, 31), token(1, 12), token(0, 6), st.none() | token(0, 59)
).map(lambda fields: " ".join(f for f in fields if f is not None))


@given(cron_expressions, instants.map(lambda t: t.replace(tzinfo=None)))
@settings(max_examples=300, deadline=None)
def test_in_utc_occurrences_agree_with_croniter(expression: str, start: datetime) -> None:
    """In UTC there is no DST, and croniter's own iteration is a second opinion (its quirks,
    such as equal ranges, are kept out of the generated expressions)."""
    try:
        schedule = parse_schedule("t", expression)
    except ConfigError:
        assume(False)  # e.g. "0 0 30 2 *": matches no date
        raise
    theirs = croniter(expression, start)
    ours = start.replace(tzinfo=UTC)
    for _ in range(3):
        ours = next_occurrence(schedule, ours)
        assert ours == theirs.get_next(datetime).replace(tzinfo=UTC)
    assert previous_occurrence(schedule, start.replace(tzinfo=UTC)) == (
        croniter(expression, start.replace(microsecond=0) + timedelta(seconds=1))
        .get_prev(datetime)
        .replace(tzinfo=UTC)
    )


# --- the decision: due ----------------------------------------------------------------------

nightly = parse_schedule("nightly", "0 3 * * *", "Europe/Paris")  # 01:00 UTC in summer


def test_nothing_is_due_before_the_next_occurrence() -> None:
    decision = due(nightly, last=utc(2024, 7, 1, 1), now=utc(2024, 7, 2, 0, 59, 59, 999999))
    assert decision == Due(
        enqueue=None, next_check=utc(2024, 7, 2, 1), skipped=0, last=utc(2024, 7, 1, 1)
    )


def test_an_occurrence_is_due_at_exactly_its_time_and_is_enqueued_once() -> None:
    decision = due(nightly, last=utc(2024, 7, 1, 1), now=utc(2024, 7, 2, 1))
    assert decision == Due(
        enqueue=utc(2024, 7, 2, 1),
        next_check=utc(2024, 7, 3, 1),
        skipped=0,
        last=utc(2024, 7, 2, 1),
    )
    again = due(nightly, last=decision.last, now=utc(2024, 7, 2, 1, 0, 1))
    assert again.enqueue is None and again.next_check == utc(2024, 7, 3, 1)


def test_never_a_period_ahead() -> None:
    # The seed enqueued tomorrow's run as soon as today's was done; nothing later than now is due.
    for now in (utc(2024, 7, 2, 1, 0, 1), utc(2024, 7, 2, 12), utc(2024, 7, 3, 0, 59, 59)):
        decision = due(nightly, last=utc(2024, 7, 2, 1), now=now)
        assert decision.enqueue is None and decision.next_check == utc(2024, 7, 3, 1)


def test_a_late_tick_still_enqueues_the_single_due_occurrence() -> None:
    decision = due(nightly, last=utc(2024, 7, 1, 1), now=utc(2024, 7, 2, 23))
    assert decision.enqueue == utc(2024, 7, 2, 1) and decision.skipped == 0


def test_skip_lets_missed_occurrences_go_and_fires_again_at_the_next_one() -> None:
    # No worker ran from the 1st to the 5th: the runs of the 2nd..5th were missed.
    decision = due(nightly, last=utc(2024, 7, 1, 1), now=utc(2024, 7, 5, 12))
    assert decision == Due(
        enqueue=None, next_check=utc(2024, 7, 6, 1), skipped=4, last=utc(2024, 7, 5, 1)
    )
    # Stored, that decision lets the schedule fire normally again.
    assert due(nightly, last=decision.last, now=utc(2024, 7, 6, 1, 0, 2)).enqueue == utc(
        2024, 7, 6, 1
    )
    assert due(nightly, last=decision.last, now=utc(2024, 7, 5, 13)).enqueue is None


def test_latest_enqueues_the_most_recent_missed_occurrence_once() -> None:
    latest = parse_schedule("nightly", "0 3 * * *", "Europe/Paris", "latest")
    decision = due(latest, last=utc(2024, 7, 1, 1), now=utc(2024, 7, 5, 12))
    assert decision == Due(
        enqueue=utc(2024, 7, 5, 1),
        next_check=utc(2024, 7, 6, 1),
        skipped=3,
        last=utc(2024, 7, 5, 1),
    )
    assert due(latest, last=decision.last, now=utc(2024, 7, 5, 13)).enqueue is None


def test_a_tick_more_than_one_period_late_counts_as_missed() -> None:
    every_two_seconds = parse_schedule("t", "* * * * * */2")
    assert due(every_two_seconds, last=utc(2024, 1, 1), now=utc(2024, 1, 1, 0, 0, 3)) == Due(
        enqueue=utc(2024, 1, 1, 0, 0, 2),
        next_check=utc(2024, 1, 1, 0, 0, 4),
        skipped=0,
        last=utc(2024, 1, 1, 0, 0, 2),
    )
    assert due(every_two_seconds, last=utc(2024, 1, 1), now=utc(2024, 1, 1, 0, 0, 4)) == Due(
        enqueue=None, next_check=utc(2024, 1, 1, 0, 0, 6), skipped=2, last=utc(2024, 1, 1, 0, 0, 4)
    )


def test_missed_counts_stay_exact_and_fast_over_long_outages() -> None:
    every_two_seconds = parse_schedule("t", "* * * * * */2", "Europe/Paris")
    decision = due(every_two_seconds, last=utc(2024, 1, 1), now=utc(2025, 1, 1))
    assert decision.skipped == 366 * 86400 // 2  # DST changes do not change elapsed seconds
    fixed = parse_schedule("t", "0,30 1-3 * * *", "Europe/Paris", "latest")
    decision = due(fixed, last=utc(2023, 12, 31, 23), now=utc(2024, 12, 31, 23))  # local midnights
    # Six a night, except 2024-03-31 where 02:00, 02:30 and 03:00 are one occurrence: 366 * 6 - 2.
    assert decision.skipped + 1 == 366 * 6 - 2


def test_a_schedule_never_fired_starts_after_it_was_first_seen() -> None:
    # Registered at 12:00 on the 1st: the 03:00 run of the 1st is not owed.
    first_seen = utc(2024, 7, 1, 10)
    assert due(nightly, last=None, now=utc(2024, 7, 1, 10), first_seen=first_seen) == Due(
        enqueue=None, next_check=utc(2024, 7, 2, 1), skipped=0, last=None
    )
    assert due(nightly, last=None, now=utc(2024, 7, 2, 1, 0, 1), first_seen=first_seen).enqueue == (
        utc(2024, 7, 2, 1)
    )
    # Without first_seen, now stands in for it: nothing is ever owed at the first look.
    assert due(nightly, last=None, now=utc(2024, 7, 2, 1)).enqueue is None


def test_an_occurrence_at_the_moment_first_seen_is_not_enqueued() -> None:
    decision = due(nightly, last=None, now=utc(2024, 7, 2, 1, 0, 1), first_seen=utc(2024, 7, 2, 1))
    assert decision.enqueue is None and decision.next_check == utc(2024, 7, 3, 1)


def test_a_never_fired_schedule_applies_its_policy_to_what_it_missed_since_first_seen() -> None:
    decision = due(nightly, last=None, now=utc(2024, 7, 4, 12), first_seen=utc(2024, 7, 1, 12))
    assert decision == Due(
        enqueue=None, next_check=utc(2024, 7, 5, 1), skipped=3, last=utc(2024, 7, 4, 1)
    )


def test_last_is_a_threshold_even_when_the_expression_changed() -> None:
    # The stored last came from "0 3 * * *"; the schedule now says "0 4 * * *".
    changed = parse_schedule("nightly", "0 4 * * *", "Europe/Paris")
    decision = due(changed, last=utc(2024, 7, 2, 1), now=utc(2024, 7, 2, 2, 0, 5))
    assert decision.enqueue == utc(2024, 7, 2, 2)


def test_a_last_ahead_of_now_enqueues_nothing() -> None:
    # Another worker's clock runs ahead and already enqueued the next occurrence.
    decision = due(nightly, last=utc(2024, 7, 2, 1), now=utc(2024, 7, 2, 0, 59, 59))
    assert decision.enqueue is None and decision.next_check == utc(2024, 7, 3, 1)


def test_due_is_deterministic_and_takes_any_aware_datetime() -> None:
    paris = ZoneInfo("Europe/Paris")
    one = due(
        nightly,
        last=datetime(2024, 7, 1, 3, tzinfo=paris),
        now=datetime(2024, 7, 5, 14, tzinfo=paris),
    )
    two = due(nightly, last=utc(2024, 7, 1, 1), now=utc(2024, 7, 5, 12))
    assert one == two and one.last is not None and one.last.tzinfo is UTC


@given(
    st.sampled_from(EXPRESSIONS),
    st.sampled_from(ZONES),
    st.sampled_from(["skip", "latest"]),
    instants,
    st.lists(st.integers(1, 120), min_size=1, max_size=20),
    st.integers(0, 2 * 86400),
    st.integers(0, 19),
)
@settings(max_examples=200, deadline=None)
def test_a_fleet_ticking_at_any_times_accounts_for_every_occurrence_exactly_once(
    expression: str,
    zone: str,
    missed: str,
    first_seen: datetime,
    gaps: list[int],
    outage: int,
    outage_at: int,
) -> None:
    """Whatever the ticks, every occurrence after first_seen up to the last tick is enqueued or
    skipped, exactly once; nothing enqueued is in the future; ``latest`` always enqueues the most
    recent due occurrence; and what is enqueued is an occurrence."""
    schedule = parse_schedule("t", expression, zone, missed)
    last: datetime | None = None
    now = first_seen
    enqueued: list[datetime] = []
    skipped = 0
    gaps.insert(outage_at, outage + 1)
    for gap in gaps:
        now += timedelta(seconds=gap, microseconds=gap % 7)
        decision = due(schedule, last=last, now=now, first_seen=first_seen)
        assert decision.next_check > now
        if decision.enqueue is not None:
            assert first_seen < decision.enqueue <= now
            assert previous_occurrence(schedule, decision.enqueue) == decision.enqueue
            enqueued.append(decision.enqueue)
        if decision.last != last:
            assert decision.last == previous_occurrence(schedule, now)
            assert decision.next_check == next_occurrence(schedule, now)
            if missed == "latest":
                assert decision.enqueue == decision.last
        skipped += decision.skipped
        last = decision.last
    assert enqueued == sorted(set(enqueued))
    owed = list(occurrences_between(schedule, first_seen, now))
    assert len(enqueued) + skipped == len(owed)
    assert set(enqueued) <= set(owed)


@given(st.sampled_from(ZONES), instants, st.lists(st.floats(0.0, 1799.0), min_size=1, max_size=40))
@settings(max_examples=100, deadline=None)
def test_ticks_more_frequent_than_the_schedule_enqueue_every_occurrence(
    zone: str, first_seen: datetime, gaps: list[float]
) -> None:
    # "*/30 * * * *" fires every 30 real minutes, also across DST: a tick at least every 30
    # minutes never finds two due, so under "skip" nothing is skipped.
    schedule = parse_schedule("t", "*/30 * * * *", zone)
    last: datetime | None = None
    now = first_seen
    enqueued = []
    for gap in gaps:
        now += timedelta(seconds=gap)
        decision = due(schedule, last=last, now=now, first_seen=first_seen)
        assert decision.skipped == 0
        if decision.enqueue is not None:
            enqueued.append(decision.enqueue)
        last = decision.last
    assert enqueued == list(occurrences_between(schedule, first_seen, now))
