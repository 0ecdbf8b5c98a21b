"""The retry policy (corequeue.core.policy): which rule decides whether an attempt that raised
is retried."""

from __future__ import annotations

import pytest

from corequeue.core.policy import Rule, Verdict, check_exception_types, decide


def test_no_rule_retries() -> None:
    assert decide(ValueError) == Verdict(True, Rule.DEFAULT)


def test_discard_on_fails_at_once_and_wins_over_everything() -> None:
    verdict = decide(
        ValueError, discard_on=(ValueError,), retry_on=(ValueError,), should_retry=True
    )
    assert verdict == Verdict(False, Rule.DISCARD_ON)
    assert "discard_on" in verdict.note("ValueError")


def test_discard_on_matches_subclasses() -> None:
    assert not decide(UnicodeDecodeError, discard_on=(ValueError,)).retry


def test_retry_on_retries_only_its_exceptions() -> None:
    assert decide(TimeoutError, retry_on=(TimeoutError,)) == Verdict(True, Rule.RETRY_ON)
    verdict = decide(KeyError, retry_on=(TimeoutError,))
    assert verdict == Verdict(False, Rule.RETRY_ON)
    assert "not in retry_on" in verdict.note("KeyError")


def test_should_retry_answer_decides_before_retry_on() -> None:
    assert decide(KeyError, retry_on=(TimeoutError,), should_retry=True) == Verdict(
        True, Rule.SHOULD_RETRY
    )
    assert decide(KeyError, should_retry=False) == Verdict(False, Rule.SHOULD_RETRY)


def test_exception_types_are_checked() -> None:
    assert check_exception_types("retry_on", ValueError) == (ValueError,)
    assert check_exception_types("retry_on", (ValueError, KeyError)) == (ValueError, KeyError)
    with pytest.raises(TypeError, match="discard_on"):
        check_exception_types("discard_on", ("ValueError",))
