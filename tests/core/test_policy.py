"""The retry policy (corequeue.core.policy): which rule decides whether an attempt that raised
is retried."""

from __future__ import annotations

import pytest

from corequeue.core.policy import Rule, Verdict, check_exception_types, decide, ending_rule


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


def test_the_rule_an_ending_records() -> None:
    # A failed job: the rule that refused the retry, else its attempts were used up.
    assert ending_rule(Rule.DISCARD_ON, refused=True, failed=True) is Rule.DISCARD_ON
    assert ending_rule(Rule.RETRY_ON, refused=True, failed=True) is Rule.RETRY_ON
    assert ending_rule(Rule.SHOULD_RETRY, refused=True, failed=True) is Rule.SHOULD_RETRY
    assert ending_rule(Rule.RETRY_ON, refused=False, failed=True) is Rule.RETRIES_EXHAUSTED
    assert ending_rule(None, refused=False, failed=True) is Rule.RETRIES_EXHAUSTED
    # A retried job: the rule that allowed it, none for the default retries.
    assert ending_rule(Rule.RETRY_ON, refused=False, failed=False) is Rule.RETRY_ON
    assert ending_rule(Rule.SHOULD_RETRY, refused=False, failed=False) is Rule.SHOULD_RETRY
    assert ending_rule(Rule.DEFAULT, refused=False, failed=False) is None
    assert ending_rule(None, refused=False, failed=False) is None
    assert all(len(rule.value) <= 32 for rule in Rule)  # attempts.rule is String(32)
