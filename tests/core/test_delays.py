"""corequeue.core.delays: one rule for enqueue's ``delay=`` and ``DeferJob(delay=...)``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from corequeue.core.delays import next_stop, run_at, seconds_until
from corequeue.core.errors import JobParamsError

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_none_means_now() -> None:
    assert run_at(None, NOW) == NOW
    assert seconds_until(None, NOW) == 0.0


@pytest.mark.parametrize("delay", [30, 30.0, timedelta(seconds=30)])
def test_seconds_and_timedeltas_count_from_now(delay: int | float | timedelta) -> None:
    assert run_at(delay, NOW) == NOW + timedelta(seconds=30)
    assert seconds_until(delay, NOW) == 30.0


@pytest.mark.parametrize("delay", [-5, -0.5, timedelta(seconds=-5)])
def test_a_negative_delay_means_now(delay: int | float | timedelta) -> None:
    assert run_at(delay, NOW) == NOW
    assert seconds_until(delay, NOW) == 0.0


def test_an_aware_datetime_is_the_instant_in_utc() -> None:
    paris = timezone(timedelta(hours=2))
    when = datetime(2024, 5, 1, 15, 0, tzinfo=paris)
    assert run_at(when, NOW) == datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    assert run_at(when, NOW).tzinfo is UTC
    assert seconds_until(when, NOW) == 3600.0


def test_a_past_datetime_is_kept_and_due_at_once() -> None:
    past = NOW - timedelta(minutes=5)
    assert run_at(past, NOW) == past  # a schedule's occurrence stays the job's run_at
    assert seconds_until(past, NOW) == 0.0


def test_a_naive_datetime_is_refused_with_what_to_do() -> None:
    with pytest.raises(JobParamsError, match="naive datetime: pass an aware one"):
        run_at(datetime(2024, 5, 1, 13, 0), NOW)
    with pytest.raises(JobParamsError, match="naive datetime"):
        seconds_until(datetime(2024, 5, 1, 13, 0), NOW)


@pytest.mark.parametrize("delay", [True, "30", [30], float("nan"), float("inf")])
def test_what_is_not_a_delay_is_refused(delay: object) -> None:
    with pytest.raises(JobParamsError, match="delay="):
        run_at(delay, NOW)  # type: ignore[arg-type]


def test_a_drain_travelling_in_time_stops_at_the_next_moment_before_its_end() -> None:
    until = NOW + timedelta(days=1)
    hour = timedelta(hours=1)
    moments = [NOW - hour, NOW, NOW + 5 * hour, NOW + 2 * hour, until, until + hour]
    assert next_stop(NOW, until, moments) == NOW + 2 * hour  # past, now and later are skipped
    assert next_stop(NOW + 2 * hour, until, moments) == NOW + 5 * hour
    assert next_stop(NOW + 5 * hour, until, moments) == until  # nothing before the end
    assert next_stop(NOW, until, []) == until
