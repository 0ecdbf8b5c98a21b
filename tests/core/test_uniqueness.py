"""The unique-key rule: which states hold a key, and how an enqueue that keeps losing gives up."""

from __future__ import annotations

from corequeue.core import uniqueness
from corequeue.core.errors import InvalidTransition
from corequeue.core.states import JobState


def test_waiting_and_running_jobs_hold_their_key() -> None:
    assert set(uniqueness.HOLDING_STATES) == {JobState.REQUESTED, JobState.RUNNING}


def test_contention_is_an_invalid_transition_naming_the_key() -> None:
    error = uniqueness.contention("report-7")
    assert isinstance(error, InvalidTransition)
    assert str(error) == "could not enqueue unique job 'report-7': contention"
    assert uniqueness.UNIQUE_INSERT_TRIES >= 1
