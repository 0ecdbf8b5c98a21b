"""corequeue.core.retry: exponential backoff with jitter, capped. Pure: the jitter is given."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corequeue.core.retry import MAX_BACKOFF_SECONDS, exponential_backoff


def test_the_midpoint_jitter_gives_base_to_the_attempt() -> None:
    assert [exponential_backoff(a, 0.5) for a in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]


def test_the_base_can_be_changed() -> None:
    assert exponential_backoff(3, 0.5, base=3.0) == 27.0


def test_the_jitter_scales_by_three_quarters_to_five_quarters() -> None:
    assert exponential_backoff(3, 0.0) == 8.0 * 0.75
    assert exponential_backoff(3, 0.999999) == pytest.approx(8.0 * 1.25, rel=1e-5)
    assert exponential_backoff(3, 0.999999) < 8.0 * 1.25


def test_the_wait_is_capped_at_an_hour_before_jitter() -> None:
    assert MAX_BACKOFF_SECONDS == 3600.0
    assert exponential_backoff(12, 0.5) == MAX_BACKOFF_SECONDS  # 2**12 = 4096 > 3600
    assert exponential_backoff(11, 0.5) == 2048.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert exponential_backoff(10**6, 0.5) == MAX_BACKOFF_SECONDS


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0.0, max_value=0.9999999))
def test_every_wait_is_within_the_jittered_bounds(attempt: int, jitter: float) -> None:
    raw = min(2.0 ** min(attempt, 64), MAX_BACKOFF_SECONDS)
    delay = exponential_backoff(attempt, jitter)
    assert 0.75 * raw <= delay < 1.25 * raw
    assert delay <= 1.25 * MAX_BACKOFF_SECONDS


@given(st.integers(min_value=1, max_value=30), st.floats(min_value=0.0, max_value=0.9999999))
def test_a_later_attempt_never_waits_less_at_the_same_jitter(attempt: int, jitter: float) -> None:
    assert exponential_backoff(attempt + 1, jitter) >= exponential_backoff(attempt, jitter)


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt numbers start at 1"):
        exponential_backoff(attempt, 0.5)


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 1.5])
def test_the_jitter_must_be_in_the_unit_interval(jitter: float) -> None:
    with pytest.raises(ValueError, match=r"jitter must be in \[0, 1\)"):
        exponential_backoff(2, jitter)
