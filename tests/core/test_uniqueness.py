"""The unique-key rules: which jobs hold their key under each policy, how a policy is written,
and what an enqueue does about a holder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from corequeue.core import uniqueness
from corequeue.core.errors import DuplicateJob, InvalidTransition, UniqueViolation
from corequeue.core.states import JobState
from corequeue.core.uniqueness import OnConflict, Resolution

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REQUESTED, RUNNING = JobState.REQUESTED, JobState.RUNNING
FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def holds(until: str, state: JobState, *, started: bool, finished_ago: float | None) -> bool:
    finished_at = None if finished_ago is None else T0 - timedelta(seconds=finished_ago)
    return uniqueness.holds(
        until, state, T0 - timedelta(hours=1) if started else None, finished_at, now=T0
    )


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("started", "started"),
        ("finished", "finished"),
        ("10m", "10m"),
        ("600s", "10m"),
        ("90s", "90s"),
        ("1.5h", "90m"),
        (" 2 d ", "2d"),
        (30, "30s"),
        (0.5, "0.5s"),
        (timedelta(hours=24), "1d"),
    ],
)
def test_a_policy_is_written_canonically(given: object, canonical: str) -> None:
    assert uniqueness.parse_until(given) == canonical


@pytest.mark.parametrize("given", ["", "forever", "10", "10x", "-5m", 0, -1, True, None, "400d"])
def test_a_bad_policy_is_refused_with_what_to_write(given: object) -> None:
    with pytest.raises(uniqueness.UniquePolicyError, match=r"unique_until=") as caught:
        uniqueness.parse_until(given)
    assert isinstance(caught.value, ValueError)


def test_a_period_reads_back_from_its_text() -> None:
    assert uniqueness.period("10m") == timedelta(minutes=10)
    assert uniqueness.period("0.5s") == timedelta(seconds=0.5)
    assert uniqueness.period("finished") is None
    assert uniqueness.period("started") is None
    assert uniqueness.expires_at("2h", T0) == T0 + timedelta(hours=2)
    assert uniqueness.expires_at("finished", T0) is None
    assert uniqueness.expires_at("2h", None) is None


def test_started_holds_only_until_the_first_start() -> None:
    assert holds("started", REQUESTED, started=False, finished_ago=None)
    assert not holds("started", RUNNING, started=True, finished_ago=None)
    # Waiting for a retry after it started: the key is free.
    assert not holds("started", REQUESTED, started=True, finished_ago=None)
    for state in FINAL:
        assert not holds("started", state, started=True, finished_ago=0)


@pytest.mark.parametrize("until", ["finished", ""])  # "": a row from before policies
def test_finished_holds_while_waiting_or_running(until: str) -> None:
    assert holds(until, REQUESTED, started=False, finished_ago=None)
    assert holds(until, REQUESTED, started=True, finished_ago=None)  # waiting for a retry
    assert holds(until, RUNNING, started=True, finished_ago=None)
    for state in FINAL:
        assert not holds(until, state, started=True, finished_ago=0)


def test_a_period_holds_that_long_after_the_ending() -> None:
    assert holds("10m", REQUESTED, started=False, finished_ago=None)
    assert holds("10m", RUNNING, started=True, finished_ago=None)
    for state in FINAL:
        assert holds("10m", state, started=True, finished_ago=0)
        assert holds("10m", state, started=True, finished_ago=599.999)
        assert not holds("10m", state, started=True, finished_ago=600)


def test_on_conflict_values() -> None:
    assert [uniqueness.parse_on_conflict(v) for v in ("keep", "replace", "raise")] == list(
        OnConflict
    )
    with pytest.raises(uniqueness.UniquePolicyError, match="not one of 'keep', 'replace'"):
        uniqueness.parse_on_conflict("overwrite")


@pytest.mark.parametrize(
    ("on_conflict", "state", "resolution"),
    [
        (OnConflict.KEEP, REQUESTED, Resolution.KEEP),
        (OnConflict.KEEP, RUNNING, Resolution.KEEP),
        (OnConflict.REPLACE, REQUESTED, Resolution.REPLACE),
        # A running or finished holder's arguments are in use or done: it is kept.
        (OnConflict.REPLACE, RUNNING, Resolution.KEEP),
        (OnConflict.REPLACE, JobState.SUCCEEDED, Resolution.KEEP),
        (OnConflict.RAISE, REQUESTED, Resolution.RAISE),
        (OnConflict.RAISE, RUNNING, Resolution.RAISE),
        (OnConflict.RAISE, JobState.FAILED, Resolution.RAISE),
    ],
)
def test_what_an_enqueue_does_about_a_holder(
    on_conflict: OnConflict, state: JobState, resolution: Resolution
) -> None:
    assert uniqueness.resolve(on_conflict, state) is resolution


def test_a_retry_takes_the_key_again_unless_the_policy_ended_at_the_start() -> None:
    for started_at in (None, T0):
        assert uniqueness.retakes_on_retry("finished", started_at)
        assert uniqueness.retakes_on_retry("5m", started_at)
    assert not uniqueness.retakes_on_retry("started", T0)
    # A job cancelled before it started waits for its first start again: in its scope.
    assert uniqueness.retakes_on_retry("started", None)


def test_duplicate_names_the_holder_and_what_to_do() -> None:
    error = uniqueness.duplicate("app.Report", "report-7", 42)
    assert isinstance(error, DuplicateJob) and isinstance(error, UniqueViolation)
    assert error.job_id == 42
    assert str(error) == (
        "job 42 (app.Report) holds the unique key 'report-7': nothing was enqueued "
        "(on_conflict='keep' returns that job instead)"
    )


def test_contention_is_an_invalid_transition_naming_the_key() -> None:
    error = uniqueness.contention("report-7")
    assert isinstance(error, InvalidTransition)
    assert str(error) == "could not enqueue unique job 'report-7': contention"
    assert uniqueness.UNIQUE_INSERT_TRIES >= 1
