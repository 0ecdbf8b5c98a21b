"""The job lifecycle: every transition of the table, then a stateful fuzz over all of them.

The core is pure, so these tests feed snapshots in and read changes out: no database, no clock.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from corequeue.core import lifecycle
from corequeue.core.errors import InvalidTransition, StaleLease
from corequeue.core.lifecycle import TRANSITIONS, Action, Change, JobSnapshot
from corequeue.core.states import FINAL_STATES, JobState, Outcome

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)
R, U = JobState.REQUESTED, JobState.RUNNING
S, F, C = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED
ALL_EVENTS: list[lifecycle.Event] = [*Outcome, *Action]
MAX_WORKER_LOSSES = 3
MAX_DEFERRALS = 2


def waiting(attempts: int = 0, max_attempts: int = 1) -> JobSnapshot:
    return JobSnapshot(R, attempts, max_attempts, None, EARLIER)


def running(attempts: int = 1, max_attempts: int = 1, lease: str = "L1") -> JobSnapshot:
    return JobSnapshot(U, attempts, max_attempts, lease, EARLIER)


def final(state: JobState, attempts: int = 1, max_attempts: int = 1) -> JobSnapshot:
    return JobSnapshot(state, attempts, max_attempts, None, EARLIER)


# -- claim ------------------------------------------------------------------------------------


def test_claim_starts_an_attempt_under_the_new_lease() -> None:
    change = lifecycle.claim(waiting(attempts=0, max_attempts=3), lease="L1", now=NOW)
    assert change == Change(U, 1, 3, "L1", EARLIER, None)


def test_a_waiting_job_with_no_attempt_left_cannot_be_claimed() -> None:
    with pytest.raises(InvalidTransition, match="retry it"):
        lifecycle.claim(waiting(attempts=2, max_attempts=2), lease="L1", now=NOW)


@pytest.mark.parametrize("state", [U, S, F, C])
def test_only_a_waiting_job_can_be_claimed(state: JobState) -> None:
    with pytest.raises(InvalidTransition, match=f"'{state.value}' cannot take event 'claim'"):
        lifecycle.claim(JobSnapshot(state, 0, 1, None, EARLIER), lease="L2", now=NOW)


# -- finish -----------------------------------------------------------------------------------


def test_success_is_final_and_stamps_finished_at() -> None:
    change = lifecycle.finish(running(), Outcome.SUCCEEDED, lease="L1", now=NOW)
    assert change == Change(S, 1, 1, None, EARLIER, NOW)


@pytest.mark.parametrize("outcome", [Outcome.ERRORED, Outcome.TIMED_OUT, Outcome.LOST])
def test_a_failed_attempt_with_attempts_left_waits_retry_delay(outcome: Outcome) -> None:
    change = lifecycle.finish(
        running(attempts=1, max_attempts=3), outcome, lease="L1", now=NOW, retry_delay=30
    )
    assert change == Change(R, 1, 3, None, NOW + timedelta(seconds=30), None)


@pytest.mark.parametrize("outcome", [Outcome.ERRORED, Outcome.TIMED_OUT, Outcome.LOST])
def test_the_last_failed_attempt_fails_the_job(outcome: Outcome) -> None:
    change = lifecycle.finish(
        running(attempts=3, max_attempts=3), outcome, lease="L1", now=NOW, retry_delay=30
    )
    assert change == Change(F, 3, 3, None, EARLIER, NOW)


def test_a_negative_retry_delay_means_now() -> None:
    change = lifecycle.finish(
        running(max_attempts=2), Outcome.ERRORED, lease="L1", now=NOW, retry_delay=-5
    )
    assert change.run_at == NOW


def test_cancelled_outcome_is_final() -> None:
    change = lifecycle.finish(running(max_attempts=5), Outcome.CANCELLED, lease="L1", now=NOW)
    assert change == Change(C, 1, 5, None, EARLIER, NOW)


def test_an_uncounted_deferral_gives_the_attempt_back() -> None:
    change = lifecycle.finish(
        running(attempts=1, max_attempts=1), Outcome.DEFERRED, lease="L1", now=NOW, defer_delay=60
    )
    assert change == Change(R, 0, 1, None, NOW + timedelta(seconds=60), None, 0, 1)


def test_a_counted_deferral_uses_the_attempt_and_waits_defer_delay() -> None:
    change = lifecycle.finish(
        running(attempts=1, max_attempts=2),
        Outcome.DEFERRED,
        lease="L1",
        now=NOW,
        defer_delay=60,
        defer_counts=True,
        retry_delay=999,
    )
    assert change == Change(R, 1, 2, None, NOW + timedelta(seconds=60), None)


def test_a_counted_deferral_of_the_last_attempt_fails_the_job() -> None:
    change = lifecycle.finish(
        running(attempts=2, max_attempts=2),
        Outcome.DEFERRED,
        lease="L1",
        now=NOW,
        defer_counts=True,
    )
    assert change == Change(F, 2, 2, None, EARLIER, NOW)


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_result_under_another_lease_is_refused_as_stale(outcome: Outcome) -> None:
    with pytest.raises(StaleLease, match="'L0' is not the job's current lease"):
        lifecycle.finish(running(lease="L1"), outcome, lease="L0", now=NOW)


@pytest.mark.parametrize("state", [R, S, F, C])
def test_a_late_result_is_stale_whatever_became_of_the_job(state: JobState) -> None:
    with pytest.raises(StaleLease):
        lifecycle.finish(JobSnapshot(state, 1, 2), Outcome.SUCCEEDED, lease="L1", now=NOW)


# -- release, cancel, retry -------------------------------------------------------------------


def test_release_puts_the_job_back_without_counting_the_attempt() -> None:
    change = lifecycle.release(running(attempts=2, max_attempts=3), lease="L1", now=NOW)
    assert change == Change(R, 1, 3, None, EARLIER, None)


def test_release_under_another_lease_is_refused() -> None:
    with pytest.raises(StaleLease):
        lifecycle.release(running(lease="L1"), lease="L0", now=NOW)


def test_interrupt_by_shutdown_requeues_now_without_using_the_attempt() -> None:
    change = lifecycle.interrupt(running(attempts=1, max_attempts=1), lease="L1", now=NOW)
    assert change == Change(R, 0, 1, None, NOW, None)


def test_interrupt_under_another_lease_is_refused() -> None:
    with pytest.raises(StaleLease):
        lifecycle.interrupt(running(lease="L1"), lease="L0", now=NOW)
    with pytest.raises(StaleLease):
        lifecycle.interrupt(final(F), lease="L1", now=NOW)


@pytest.mark.parametrize("job", [waiting(), running()], ids=["requested", "running"])
def test_cancel_ends_a_waiting_or_running_job(job: JobSnapshot) -> None:
    change = lifecycle.cancel(job, now=NOW)
    assert change == Change(C, job.attempts, job.max_attempts, None, EARLIER, NOW)


@pytest.mark.parametrize("state", [S, F, C])
def test_a_finished_job_cannot_be_cancelled(state: JobState) -> None:
    with pytest.raises(InvalidTransition, match=f"'{state.value}' cannot take event 'cancel'"):
        lifecycle.cancel(final(state), now=NOW)


@pytest.mark.parametrize("state", [F, C])
def test_retry_grants_one_more_attempt_to_run_now(state: JobState) -> None:
    change = lifecycle.retry(final(state, attempts=3, max_attempts=3), now=NOW)
    assert change == Change(R, 3, 4, None, NOW, None)


def test_retry_of_a_job_cancelled_before_using_its_attempts_keeps_them() -> None:
    change = lifecycle.retry(final(C, attempts=0, max_attempts=3), now=NOW)
    assert change == Change(R, 0, 3, None, NOW, None)


@pytest.mark.parametrize("state", [R, U, S])
def test_only_failed_or_cancelled_jobs_can_be_retried(state: JobState) -> None:
    with pytest.raises(InvalidTransition, match=f"'{state.value}' cannot take event 'retry'"):
        lifecycle.retry(JobSnapshot(state, 1, 1, "L1" if state is U else None), now=NOW)


# -- the table itself -------------------------------------------------------------------------

MISSING = [
    (state, event)
    for state, event in itertools.product(JobState, ALL_EVENTS)
    if (state, event) not in TRANSITIONS
]


@pytest.mark.parametrize(("state", "event"), MISSING, ids=[f"{s}-{e}" for s, e in MISSING])
def test_every_move_missing_from_the_table_is_an_invalid_transition(
    state: JobState, event: lifecycle.Event
) -> None:
    with pytest.raises(InvalidTransition) as raised:
        lifecycle.next_states(state, event)
    assert f"'{state.value}'" in str(raised.value)
    assert f"'{event.value}'" in str(raised.value)


def test_nothing_leaves_succeeded_and_only_retry_leaves_failed_or_cancelled() -> None:
    leaving = {(state, event) for state, event in TRANSITIONS if state in FINAL_STATES}
    assert leaving == {(F, Action.RETRY), (C, Action.RETRY)}


def test_every_outcome_ends_a_running_attempt() -> None:
    assert {e for s, e in TRANSITIONS if s is U and isinstance(e, Outcome)} == set(Outcome)


def test_the_mermaid_diagram_lists_exactly_the_table_edges() -> None:
    diagram = lifecycle.mermaid_diagram()
    lines = diagram.splitlines()
    assert lines[0] == "stateDiagram-v2"
    edge = re.compile(r"^\s+(\S+) --> (\S+): (\S+)$")
    drawn = [m.groups() for line in lines if (m := edge.match(line))]
    expected = [
        (source.value, target.value, event.value)
        for (source, event), targets in TRANSITIONS.items()
        for target in targets
    ]
    assert sorted(drawn) == sorted(expected)
    assert len(drawn) == len(set(drawn))
    # Entry and exit markers: jobs start waiting; the three results are final.
    starts = {line.split("-->")[1].strip() for line in lines if "[*] -->" in line}
    ends = {line.split("-->")[0].strip() for line in lines if "--> [*]" in line}
    assert starts == {R.value}
    assert ends == {s.value for s in FINAL_STATES}


# -- stateful fuzz over the table -------------------------------------------------------------


class JobLifecycle(RuleBasedStateMachine):
    """One job driven by random events; the model checks every change against the table.

    The job is the snapshot the core returned last. Events that the table refuses must raise
    and leave the job as it was; a result under any lease but the current one is stale.
    """

    def __init__(self) -> None:
        super().__init__()
        self.job = waiting()
        self.finished_at: datetime | None = None
        self.leases: list[str] = []  # every lease ever issued, the current one last
        self.now = NOW
        self.retries = 0

    @initialize(retries=st.integers(min_value=0, max_value=3))
    def enqueue(self, retries: int) -> None:
        self.retries = retries
        self.job = waiting(attempts=0, max_attempts=retries + 1)

    def _tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def _apply(self, event: lifecycle.Event, change: Change) -> None:
        before = self.job
        assert change.state in TRANSITIONS[(before.state, event)]
        if before.state is S:
            raise AssertionError("a succeeded job moved")
        if before.state in FINAL_STATES:
            assert event is Action.RETRY
        self.job = change.snapshot()
        self.finished_at = change.finished_at

    def _refused(self, call: object, error: type[Exception]) -> None:
        before, finished_at = self.job, self.finished_at
        with pytest.raises(error):
            assert callable(call)
            call()
        assert (self.job, self.finished_at) == (before, finished_at)

    @rule()
    def claim(self) -> None:
        lease = f"L{len(self.leases) + 1}"
        if self.job.state is R:
            self.leases.append(lease)
            change = lifecycle.claim(self.job, lease=lease, now=self._tick())
            assert change.attempts == self.job.attempts + 1
            assert change.lease == lease
            self._apply(Action.CLAIM, change)
        else:
            self._refused(
                lambda: lifecycle.claim(self.job, lease=lease, now=self.now), InvalidTransition
            )

    @rule(
        outcome=st.sampled_from(Outcome),
        retry_delay=st.floats(min_value=0, max_value=3600),
        defer_counts=st.booleans(),
    )
    def finish_current(self, outcome: Outcome, retry_delay: float, defer_counts: bool) -> None:
        if self.job.state is not U:
            # No lease is current outside running: any late result is stale.
            if self.leases:
                lease = self.leases[-1]
                self._refused(
                    lambda: lifecycle.finish(self.job, outcome, lease=lease, now=self.now),
                    StaleLease,
                )
            return
        before = self.job
        assert before.lease is not None
        now = self._tick()
        change = lifecycle.finish(
            before,
            outcome,
            lease=before.lease,
            now=now,
            retry_delay=retry_delay,
            defer_delay=7,
            defer_counts=defer_counts,
            max_deferrals=MAX_DEFERRALS,
        )
        self._apply(outcome, change)
        if outcome is not Outcome.DEFERRED:
            assert change.worker_losses == 0  # any other ending breaks a run of worker losses
        if outcome is Outcome.SUCCEEDED:
            assert change.state is S
        elif outcome is Outcome.CANCELLED:
            assert change.state is C
        elif outcome is Outcome.DEFERRED and not defer_counts:
            assert change.attempts == before.attempts - 1
            assert change.deferrals == before.deferrals + 1
            if before.deferrals < MAX_DEFERRALS:
                assert change.state is R
                assert change.run_at == now + timedelta(seconds=7)
            else:
                assert change.state is F
                assert lifecycle.deferred_too_often(change, MAX_DEFERRALS)
        elif before.attempts < before.max_attempts:
            assert change.state is R
            assert change.attempts == before.attempts
        else:
            assert change.state is F

    @precondition(lambda self: len(self.leases) > 1 or (self.leases and self.job.state is not U))
    @rule(outcome=st.sampled_from(Outcome), data=st.data())
    def finish_stale(self, outcome: Outcome, data: st.DataObject) -> None:
        current = self.job.lease
        stale = [lease for lease in self.leases if lease != current]
        lease = data.draw(st.sampled_from(stale))
        self._refused(
            lambda: lifecycle.finish(self.job, outcome, lease=lease, now=self.now), StaleLease
        )

    @rule(stale=st.booleans())
    def release(self, stale: bool) -> None:
        if self.job.state is U and not stale:
            assert self.job.lease is not None
            change = lifecycle.release(self.job, lease=self.job.lease, now=self._tick())
            assert change.attempts == self.job.attempts - 1
            self._apply(Action.RELEASE, change)
        elif self.job.state is U or self.leases:
            # Outside running no lease is current, so even the last one issued is stale.
            lease = "never-issued" if stale else self.leases[-1]
            self._refused(
                lambda: lifecycle.release(self.job, lease=lease, now=self.now), StaleLease
            )

    @rule(stale=st.booleans())
    def worker_lost(self, stale: bool) -> None:
        """The rescuer finds the job's worker dead: no attempt used, a crash loop ends."""
        if self.job.state is not U:
            return
        before = self.job
        assert before.lease is not None
        job = before._replace(lease="never-issued") if stale else before
        lost = lifecycle.lose(
            job,
            worker_id="w",
            reason=lifecycle.LostReason.HEARTBEAT_EXPIRED,
            now=self._tick(),
            retry_delay=99,
            max_worker_losses=MAX_WORKER_LOSSES,
        )
        if stale:  # the rescuer reads the lease it writes under: nothing to refuse here
            return
        change = lost.change
        self._apply(Action.WORKER_LOST, change)
        assert change.attempts == before.attempts - 1
        assert change.worker_losses == before.worker_losses + 1
        if change.worker_losses < MAX_WORKER_LOSSES:
            assert (change.state, change.run_at) == (R, self.now)
        else:
            assert change.state is F
            assert lifecycle.is_crash_loop(change, MAX_WORKER_LOSSES)
            assert "crash loop" in lost.error_message

    @rule(waited=st.floats(min_value=0, max_value=7200), stale=st.booleans())
    def unresolved(self, waited: float, stale: bool) -> None:
        """A worker cannot resolve the job's name: no attempt used until the timeout."""
        if self.job.state is not U:
            return
        before = self.job
        assert before.lease is not None
        now = self._tick()
        enqueued = now - timedelta(seconds=waited)
        if stale:
            self._refused(
                lambda: lifecycle.unresolved(
                    before, lease="never-issued", now=now, enqueued_at=enqueued, timeout=3600
                ),
                StaleLease,
            )
            return
        change = lifecycle.unresolved(
            before, lease=before.lease, now=now, enqueued_at=enqueued, timeout=3600
        )
        self._apply(Action.UNRESOLVED, change)
        assert change.attempts == before.attempts - 1
        assert change.state is (F if waited >= 3600 else R)
        if change.state is R:
            assert change.run_at is not None and change.run_at > now

    @rule()
    def cancel(self) -> None:
        if self.job.state in (R, U):
            self._apply(Action.CANCEL, lifecycle.cancel(self.job, now=self._tick()))
        else:
            self._refused(lambda: lifecycle.cancel(self.job, now=self.now), InvalidTransition)

    @rule()
    def retry(self) -> None:
        if self.job.state in (F, C):
            before = self.job
            change = lifecycle.retry(before, now=self._tick())
            assert change.max_attempts == max(before.max_attempts, before.attempts + 1)
            assert change.run_at == self.now
            self._apply(Action.RETRY, change)
        else:
            self._refused(lambda: lifecycle.retry(self.job, now=self.now), InvalidTransition)

    @invariant()
    def one_state_and_finished_at_exactly_for_final_states(self) -> None:
        assert isinstance(self.job.state, JobState)
        assert (self.finished_at is not None) == (self.job.state in FINAL_STATES)

    @invariant()
    def lease_set_exactly_while_running(self) -> None:
        assert (self.job.lease is not None) == (self.job.state is U)
        if self.job.state is U:
            assert self.job.lease == self.leases[-1]

    @invariant()
    def attempts_never_exceed_max_attempts(self) -> None:
        assert 0 <= self.job.attempts <= self.job.max_attempts
        assert self.job.max_attempts >= self.retries + 1
        if self.job.state is R:
            assert self.job.attempts < self.job.max_attempts

    @invariant()
    def loops_are_bounded(self) -> None:
        # A job still in play has had fewer than max_worker_losses worker losses in a row and
        # no more than max_deferrals deferrals: past those it fails.
        if self.job.state in (R, U):
            assert self.job.worker_losses < MAX_WORKER_LOSSES
            assert self.job.deferrals <= MAX_DEFERRALS

    @invariant()
    def without_manual_retry_attempts_stay_within_retries_plus_one(self) -> None:
        # max_attempts only grows through an explicit retry of a failed/cancelled job.
        if self.job.max_attempts == self.retries + 1:
            assert self.job.attempts <= self.retries + 1


JobLifecycle.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_job_lifecycle = JobLifecycle.TestCase


# -- what a person may do ---------------------------------------------------------------------


def test_actions_for_each_state_follow_the_table() -> None:
    assert lifecycle.actions_for(R) == {Action.CANCEL, Action.DELETE}
    assert lifecycle.actions_for(U) == {Action.CANCEL}
    assert lifecycle.actions_for(S) == {Action.DELETE}
    assert lifecycle.actions_for(F) == {Action.RETRY, Action.DELETE}
    assert lifecycle.actions_for(C) == {Action.RETRY, Action.DELETE}


@pytest.mark.parametrize("state", list(JobState))
def test_cancel_and_retry_are_offered_exactly_where_the_table_allows_them(
    state: JobState,
) -> None:
    for action in (Action.CANCEL, Action.RETRY):
        assert (action in lifecycle.actions_for(state)) == ((state, action) in TRANSITIONS)


def test_a_running_job_cannot_be_deleted_and_no_other_state_refuses() -> None:
    with pytest.raises(InvalidTransition, match="cancel it before deleting it"):
        lifecycle.check_delete(U)
    for state in (R, S, F, C):
        lifecycle.check_delete(state)


# -- lost attempts, requeue --------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_a_worker_loss_requeues_the_job_at_once_without_using_an_attempt(
    max_attempts: int,
) -> None:
    lost = lifecycle.lose(
        running(attempts=1, max_attempts=max_attempts),
        worker_id="w1",
        reason=lifecycle.LostReason.HEARTBEAT_EXPIRED,
        now=NOW,
        retry_delay=30,
        heartbeat_timeout=12.5,
        max_worker_losses=3,
    )
    assert lost.change == Change(R, 0, max_attempts, None, NOW, None, 1, 0)
    assert lost.error_type == "WorkerLost"
    assert lost.error_message == (
        "worker w1 stopped heartbeating for more than 12.5s while running this job"
        " (worker loss 1 in a row): requeued without using an attempt"
    )


def test_the_max_worker_losses_th_loss_in_a_row_fails_the_job_as_a_crash_loop() -> None:
    job = running(attempts=1, max_attempts=5)._replace(worker_losses=2)
    lost = lifecycle.lose(
        job,
        worker_id="w1",
        reason=lifecycle.LostReason.HEARTBEAT_EXPIRED,
        now=NOW,
        retry_delay=30,
        max_worker_losses=3,
    )
    assert lost.change == Change(F, 0, 5, None, EARLIER, NOW, 3, 0)
    assert "worker loss 3 in a row" in lost.error_message
    assert "max_worker_losses = 3 reached, it looks like a crash loop" in lost.error_message
    assert lifecycle.is_crash_loop(lost.change, 3)


def test_any_other_ending_breaks_the_run_of_worker_losses() -> None:
    job = running(attempts=1, max_attempts=3)._replace(worker_losses=2)
    for outcome in (Outcome.ERRORED, Outcome.LOST, Outcome.TIMED_OUT, Outcome.SUCCEEDED):
        assert lifecycle.finish(job, outcome, lease="L1", now=NOW).worker_losses == 0
    # The worker's own shutdown and a release are no ending of the job's: the run stays.
    assert lifecycle.interrupt(job, lease="L1", now=NOW).worker_losses == 2
    assert lifecycle.release(job, lease="L1", now=NOW).worker_losses == 2


def test_deferrals_past_max_deferrals_fail_the_job() -> None:
    job = running(attempts=1, max_attempts=1)._replace(deferrals=2)
    kept = lifecycle.finish(
        job, Outcome.DEFERRED, lease="L1", now=NOW, defer_delay=5, max_deferrals=3
    )
    assert kept == Change(R, 0, 1, None, NOW + timedelta(seconds=5), None, 0, 3)
    assert not lifecycle.deferred_too_often(kept, 3)
    failed = lifecycle.finish(
        kept.snapshot()._replace(state=U, attempts=1, lease="L2"),
        Outcome.DEFERRED,
        lease="L2",
        now=NOW,
        max_deferrals=3,
    )
    assert failed == Change(F, 0, 1, None, NOW + timedelta(seconds=5), NOW, 0, 4)
    assert lifecycle.deferred_too_often(failed, 3)
    assert "more than max_deferrals = 3 times" in lifecycle.too_many_deferrals_message(3)
    # A deferral that uses an attempt is bounded by the attempts, not counted here.
    counted = lifecycle.finish(
        job._replace(max_attempts=2),
        Outcome.DEFERRED,
        lease="L1",
        now=NOW,
        defer_counts=True,
        max_deferrals=2,
    )
    assert (counted.state, counted.deferrals) == (R, 2)


def test_an_unresolvable_job_waits_without_using_an_attempt_until_the_timeout() -> None:
    job = running(attempts=1, max_attempts=1)
    enqueued = NOW - timedelta(seconds=100)
    change = lifecycle.unresolved(job, lease="L1", now=NOW, enqueued_at=enqueued, timeout=3600)
    assert change == Change(R, 0, 1, None, NOW + timedelta(seconds=25), None)
    late = lifecycle.unresolved(
        job, lease="L1", now=NOW, enqueued_at=NOW - timedelta(hours=1), timeout=3600
    )
    assert late == Change(F, 0, 1, None, EARLIER, NOW)
    with pytest.raises(StaleLease):
        lifecycle.unresolved(job, lease="L9", now=NOW, enqueued_at=enqueued, timeout=1)


def test_the_unresolved_backoff_grows_with_the_wait_within_bounds() -> None:
    assert lifecycle.unresolved_delay(0) == 1.0
    assert lifecycle.unresolved_delay(40) == 10.0
    assert lifecycle.unresolved_delay(10_000) == 60.0


def test_the_last_lost_attempt_fails_the_job_and_says_it_was_not_held() -> None:
    lost = lifecycle.lose(
        running(attempts=1, max_attempts=1),
        worker_id="w2",
        reason=lifecycle.LostReason.NOT_HELD,
        now=NOW,
        retry_delay=30,
    )
    assert lost.change == Change(F, 1, 1, None, EARLIER, NOW)
    assert lost.error_message == (
        "worker w2 no longer held this attempt (its result was never recorded)"
    )


def test_lost_before_is_now_minus_the_heartbeat_timeout() -> None:
    assert lifecycle.lost_before(NOW, 30) == NOW - timedelta(seconds=30)


@pytest.mark.parametrize(
    ("change", "clears"),
    [
        (Change(R, 1, 2, None, NOW, None), True),  # retried or requeued: the old result goes
        (Change(C, 1, 1, None, EARLIER, NOW), False),
        (Change(S, 1, 1, None, EARLIER, NOW), False),
        (Change(F, 1, 1, None, EARLIER, NOW), False),
    ],
)
def test_only_going_back_to_wait_clears_the_stored_result(change: Change, clears: bool) -> None:
    assert lifecycle.clears_result(change) is clears
