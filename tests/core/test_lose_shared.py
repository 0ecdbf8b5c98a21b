"""A child that dies on its own with several jobs in flight (issue 19): nobody knows which job
killed it, so each lost attempt is uncounted but counts toward the crash-loop bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corequeue.core import lifecycle
from corequeue.core.errors import StaleLease
from corequeue.core.lifecycle import JobSnapshot
from corequeue.core.states import JobState

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=5)


def running(attempts: int, max_attempts: int, losses: int = 0) -> JobSnapshot:
    return JobSnapshot(JobState.RUNNING, attempts, max_attempts, "L1", EARLIER, losses)


def test_a_shared_loss_uses_no_attempt_and_runs_the_job_again_at_once() -> None:
    change = lifecycle.lose_shared(running(1, 1), lease="L1", now=NOW, max_worker_losses=3)
    assert change.state is JobState.REQUESTED
    assert change.attempts == 0  # the attempt is given back, even with none left after it
    assert change.run_at == NOW
    assert change.worker_losses == 1
    assert not lifecycle.is_crash_loop(change, 3)


def test_the_bound_th_shared_loss_in_a_row_fails_the_job_as_a_crash_loop() -> None:
    change = lifecycle.lose_shared(running(3, 5, 2), lease="L1", now=NOW, max_worker_losses=3)
    assert change.state is JobState.FAILED
    assert change.attempts == 2
    assert change.finished_at == NOW
    assert lifecycle.is_crash_loop(change, 3)


def test_a_stale_lease_is_refused() -> None:
    with pytest.raises(StaleLease):
        lifecycle.lose_shared(running(1, 1), lease="L0", now=NOW, max_worker_losses=3)


@given(
    attempts=st.integers(1, 50),
    extra=st.integers(0, 5),
    losses=st.integers(0, 10),
    bound=st.none() | st.integers(1, 10),
)
def test_shared_losses_never_use_an_attempt_and_end_only_at_the_bound(
    attempts: int, extra: int, losses: int, bound: int | None
) -> None:
    job = running(attempts, attempts + extra, losses)
    change = lifecycle.lose_shared(job, lease="L1", now=NOW, max_worker_losses=bound)
    assert change.attempts == attempts - 1
    assert change.worker_losses == losses + 1
    assert change.lease is None
    crash_loop = bound is not None and losses + 1 >= bound
    assert change.state is (JobState.FAILED if crash_loop else JobState.REQUESTED)
    assert lifecycle.is_crash_loop(change, bound) is crash_loop
