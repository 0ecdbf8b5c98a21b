"""The job lifecycle: every decision that changes a job's state is made here.

Theory of operation: a caller (the worker, the store's maintenance services, the command line)
holds a :class:`JobSnapshot` of a job, feeds an event in (an attempt's :class:`Outcome`, or an
:class:`Action`), and gets a :class:`Change` back: the state, attempt counts, run time and lease
the job must have afterwards. The caller persists the change with a compare-and-set on the
state (and lease) it read, so a late writer is refused rather than applied.

Two rules: every state change is decided in this module, and this module does no I/O. It reads
no clock and draws no random numbers: ``now`` and retry delays are arguments.

The legal moves are the data in :data:`TRANSITIONS`; an event missing from it for the job's
state is an :class:`InvalidTransition` that names both.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from corequeue.core.errors import InvalidTransition, StaleLease
from corequeue.core.policy import Rule, ending_rule
from corequeue.core.states import JobState, Outcome


class Action(StrEnum):
    """Events that do not end an attempt."""

    CLAIM = "claim"
    CANCEL = "cancel"
    RETRY = "retry"
    RELEASE = "release"  # a claimed attempt that never started goes back, uncounted
    DELETE = "delete"  # the job's row goes, attempts and all: no state follows
    #: The attempt's worker died or stopped heartbeating: not the job's fault, no attempt used;
    #: failed only as a crash loop (``max_worker_losses`` such losses in a row).
    WORKER_LOST = "worker_lost"
    #: The worker could not resolve the job's name (a rolling deploy): no attempt used; failed
    #: only once the job has stayed unresolvable for ``unknown_job_timeout``.
    UNRESOLVED = "unresolved"


Event = Outcome | Action

_R, _U = JobState.REQUESTED, JobState.RUNNING
_S, _F, _C = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED

#: (state, event) -> possible next states. Where two are listed, the first applies while the job
#: has attempts left and the second once they are used up.
TRANSITIONS: dict[tuple[JobState, Event], tuple[JobState, ...]] = {
    (_R, Action.CLAIM): (_U,),
    (_R, Action.CANCEL): (_C,),
    (_U, Outcome.SUCCEEDED): (_S,),
    (_U, Outcome.ERRORED): (_R, _F),
    (_U, Outcome.TIMED_OUT): (_R, _F),
    (_U, Outcome.LOST): (_R, _F),
    (_U, Outcome.DEFERRED): (_R, _F),  # _F once counted attempts or max_deferrals run out
    (_U, Outcome.CANCELLED): (_C,),
    (_U, Action.CANCEL): (_C,),
    (_U, Action.RELEASE): (_R,),
    (_U, Action.WORKER_LOST): (_R, _F),  # _F: a crash loop
    (_U, Action.UNRESOLVED): (_R, _F),  # _F: unresolvable for unknown_job_timeout
    (_F, Action.RETRY): (_R,),
    (_C, Action.RETRY): (_R,),
}

#: States in which a job may be deleted (:data:`Action.DELETE`): a waiting or finished one.
#: Never a running one: its worker holds it, so cancel it first. Kept apart from
#: :data:`TRANSITIONS` because a deleted job has no next state to draw.
DELETABLE: frozenset[JobState] = frozenset({_R, _S, _F, _C})


def _states_taking(action: Action) -> frozenset[JobState]:
    return frozenset(state for state, event in TRANSITIONS if event is action)


#: The actions a person may take on a job (the command line, the dashboard), and the states in
#: which each is legal: cancel and retry as :data:`TRANSITIONS` has them, delete as
#: :data:`DELETABLE`.
PERSON_ACTIONS: dict[Action, frozenset[JobState]] = {
    Action.CANCEL: _states_taking(Action.CANCEL),
    Action.RETRY: _states_taking(Action.RETRY),
    Action.DELETE: DELETABLE,
}


class JobSnapshot(NamedTuple):
    """What the lifecycle needs to know about a job. (Named tuples, this and Change: immutable,
    and built several times faster than frozen dataclasses, once per finished job.)"""

    state: JobState
    attempts: int  # attempts started so far (a claim starts one)
    max_attempts: int  # retries + 1
    lease: str | None = None  # token of the running attempt
    run_at: datetime | None = None
    worker_losses: int = 0  # attempts lost in a row with their worker (WORKER_LOST)
    deferrals: int = 0  # times the job deferred itself without using an attempt

    @property
    def attempts_left(self) -> int:
        return max(self.max_attempts - self.attempts, 0)


class Change(NamedTuple):
    """The job as it must be after an event; ``finished_at`` is set exactly for final states."""

    state: JobState
    attempts: int
    max_attempts: int
    lease: str | None
    run_at: datetime | None
    finished_at: datetime | None
    worker_losses: int = 0
    deferrals: int = 0

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(
            self.state,
            self.attempts,
            self.max_attempts,
            self.lease,
            self.run_at,
            self.worker_losses,
            self.deferrals,
        )


def next_states(state: JobState, event: Event) -> tuple[JobState, ...]:
    """Return the states ``event`` may lead to from ``state``; raise InvalidTransition if none."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(
            f"a job in state {state.value!r} cannot take event {event.value!r}"
        ) from None


def actions_for(state: JobState) -> frozenset[Action]:
    """Which of :data:`PERSON_ACTIONS` a person may take on a job in ``state``."""
    return frozenset(action for action, states in PERSON_ACTIONS.items() if state in states)


def check_delete(state: JobState) -> None:
    """Raise InvalidTransition unless a job in ``state`` may be deleted."""
    if state not in DELETABLE:
        raise InvalidTransition(
            f"a job in state {state.value!r} cannot take event {Action.DELETE.value!r}:"
            " cancel it before deleting it"
        )


def claim(job: JobSnapshot, *, lease: str, now: datetime) -> Change:
    """Start an attempt under ``lease``. Returns the running job.

    Raises InvalidTransition unless the job is waiting with an attempt left.
    """
    (state,) = next_states(job.state, Action.CLAIM)
    if job.attempts >= job.max_attempts:
        raise InvalidTransition(
            f"a waiting job with {job.attempts} of {job.max_attempts} attempts used cannot be "
            "claimed: retry it to grant another attempt"
        )
    return Change(
        state,
        job.attempts + 1,
        job.max_attempts,
        lease,
        job.run_at,
        None,
        job.worker_losses,
        job.deferrals,
    )


def finish(
    job: JobSnapshot,
    outcome: Outcome,
    *,
    lease: str,
    now: datetime,
    retry_delay: float = 0.0,
    defer_delay: float = 0.0,
    defer_counts: bool = False,
    max_deferrals: int | None = None,
    retryable: bool = True,
) -> Change:
    """Record how the attempt held under ``lease`` ended.

    ``retry_delay`` (seconds) applies when a failed attempt is retried; ``defer_delay`` when the
    job deferred itself, and ``defer_counts`` says whether that deferral used up the attempt.
    A deferral that uses no attempt is counted in ``deferrals``: past ``max_deferrals`` (None:
    unbounded) the job fails (:func:`deferred_too_often` says so). ``retryable=False`` (the
    job's retry policy refused a retry: :mod:`corequeue.core.policy`) fails a failed attempt
    at once. Any ending but a deferral breaks a run of worker losses (``worker_losses`` to 0).
    Returns the next state. Raises StaleLease when ``lease`` is not the job's current lease
    (a late result from a superseded attempt), InvalidTransition when the job is not running.
    """
    if job.lease != lease:
        # Checked first: a late result is refused as stale whatever became of the job since.
        raise StaleLease(
            f"result {outcome.value!r} refused: lease {lease!r} is not the job's current lease"
        )
    choices = next_states(job.state, outcome)
    if outcome is Outcome.DEFERRED:
        attempts = job.attempts if defer_counts else job.attempts - 1
        deferrals = job.deferrals if defer_counts else job.deferrals + 1
        if (defer_counts and attempts >= job.max_attempts) or (
            max_deferrals is not None and deferrals > max_deferrals
        ):
            return _final(choices[-1], job, attempts, now, deferrals=deferrals)
        return Change(
            choices[0],
            attempts,
            job.max_attempts,
            None,
            _after(now, defer_delay),
            None,
            job.worker_losses,
            deferrals,
        )
    if len(choices) == 1:
        return _final(choices[0], job, job.attempts, now, worker_losses=0)
    if retryable and job.attempts < job.max_attempts:
        return Change(
            choices[0],
            job.attempts,
            job.max_attempts,
            None,
            _after(now, retry_delay),
            None,
            0,
            job.deferrals,
        )
    return _final(choices[1], job, job.attempts, now, worker_losses=0)


def deferred_too_often(change: Change, max_deferrals: int | None) -> bool:
    """Whether ``change`` (a deferral's) failed the job for deferring past ``max_deferrals``."""
    return (
        change.state is JobState.FAILED
        and max_deferrals is not None
        and change.deferrals > max_deferrals
    )


def too_many_deferrals_message(max_deferrals: int) -> str:
    """The error of a job failed by :func:`deferred_too_often`."""
    return (
        f"the job deferred itself more than max_deferrals = {max_deferrals} times without "
        "using an attempt: it looks like it defers forever; raise max_deferrals (or the "
        "job's delay), or make it defer with increment_retries=True, then retry it"
    )


def release(job: JobSnapshot, *, lease: str, now: datetime) -> Change:
    """Give back a claimed attempt that never started (shutdown): the attempt is not counted."""
    if job.lease != lease:
        raise StaleLease(f"release refused: lease {lease!r} is not the job's current lease")
    (state,) = next_states(job.state, Action.RELEASE)
    return _waiting(state, job, job.run_at)


def interrupt(job: JobSnapshot, *, lease: str, now: datetime) -> Change:
    """A running attempt that the worker's own shutdown stopped (its grace period ran out, or
    a second stop signal): the job goes back to wait, to run again at once, and the attempt
    is not counted. A deploy is not the job's fault, so it must neither use up a retry nor
    fail a job that has none; the worker still records the stopped attempt (as ``lost``).
    Raises StaleLease when ``lease`` is not the job's current lease."""
    if job.lease != lease:
        raise StaleLease(f"interrupt refused: lease {lease!r} is not the job's current lease")
    (state,) = next_states(job.state, Action.RELEASE)
    return _waiting(state, job, now)


def _waiting(state: JobState, job: JobSnapshot, run_at: datetime | None) -> Change:
    """Back to wait with the attempt uncounted, the counters as they were."""
    return Change(
        state,
        job.attempts - 1,
        job.max_attempts,
        None,
        run_at,
        None,
        job.worker_losses,
        job.deferrals,
    )


#: Bounds of the wait before a job whose name could not be resolved is offered again.
UNRESOLVED_DELAY_MIN = 1.0
UNRESOLVED_DELAY_MAX = 60.0


def unresolved_delay(waited: float) -> float:
    """Seconds before an unresolvable job is offered again, ``waited`` seconds after it was
    enqueued: a quarter of that, within 1 s and 60 s (a backoff that grows with the wait)."""
    return min(max(waited / 4.0, UNRESOLVED_DELAY_MIN), UNRESOLVED_DELAY_MAX)


def unresolved(
    job: JobSnapshot, *, lease: str, now: datetime, enqueued_at: datetime, timeout: float
) -> Change:
    """The worker could not resolve the job's name (its code is not deployed here yet, say):
    the attempt is not counted and the job waits (:func:`unresolved_delay`) for a worker
    that can; it fails once it has stayed unresolvable ``timeout`` seconds since
    ``enqueued_at``. Raises StaleLease when ``lease`` is not the job's current lease."""
    if job.lease != lease:
        raise StaleLease(f"unresolved refused: lease {lease!r} is not the job's current lease")
    waiting, failed = next_states(job.state, Action.UNRESOLVED)
    waited = (now - enqueued_at).total_seconds()
    if waited >= timeout:
        return _final(failed, job, job.attempts - 1, now)
    return _waiting(waiting, job, _after(now, unresolved_delay(waited)))


def cancel(job: JobSnapshot, *, now: datetime) -> Change:
    """Cancel a waiting or running job. Returns the cancelled job; raises InvalidTransition."""
    (state,) = next_states(job.state, Action.CANCEL)
    return _final(state, job, job.attempts, now)


def retry(job: JobSnapshot, *, now: datetime) -> Change:
    """Send a failed or cancelled job back to wait, with one more attempt, to run now. Its
    counts of worker losses and deferrals start again from 0: a person chose to try again."""
    (state,) = next_states(job.state, Action.RETRY)
    return Change(state, job.attempts, max(job.max_attempts, job.attempts + 1), None, now, None)


def clears_result(change: Change) -> bool:
    """Whether persisting ``change`` clears the job's stored result: when the job goes back to
    wait, so that the result of an earlier run is never read as the next one's."""
    return change.state is JobState.REQUESTED


class LostReason(StrEnum):
    """Why a running attempt counts as lost."""

    #: Its worker stopped heartbeating (crashed, hung, cut off) for longer than the timeout.
    HEARTBEAT_EXPIRED = "heartbeat_expired"
    #: Its worker is alive but does not hold the attempt (its result was never recorded).
    NOT_HELD = "not_held"


#: The error type recorded for a lost attempt.
LOST_ERROR_TYPE = "WorkerLost"


class LostAttempt(NamedTuple):
    """How a lost attempt ends: the job's change, the error its attempt records, and the rule
    that failed the job, when it did (a crash loop, or its attempts used up)."""

    change: Change
    error_type: str
    error_message: str
    rule: Rule | None = None


def lost_before(now: datetime, heartbeat_timeout: float) -> datetime:
    """A running job whose worker has not heartbeaten since this time (and that started before
    it) counts as lost: the rule the store's rescue query translates."""
    return now - timedelta(seconds=heartbeat_timeout)


def lose(
    job: JobSnapshot,
    *,
    worker_id: str | None,
    reason: LostReason,
    now: datetime,
    retry_delay: float,
    heartbeat_timeout: float = 0.0,
    max_worker_losses: int | None = None,
) -> LostAttempt:
    """End ``job``'s running attempt as lost, with the error that says why.

    :attr:`LostReason.HEARTBEAT_EXPIRED`: the worker died or was cut off, which is not the
    job's fault (:data:`Action.WORKER_LOST`): the attempt is not counted and the job runs
    again at once, whether or not it had started; but the ``max_worker_losses``-th such loss
    in a row (None: no bound) fails it as a crash loop. ``heartbeat_timeout`` names the
    timeout in the message. :attr:`LostReason.NOT_HELD`: the worker is alive and its result
    was lost; the attempt counts (retried after ``retry_delay`` while attempts are left)."""
    assert job.lease is not None, "only a running attempt can be lost"
    if reason is not LostReason.HEARTBEAT_EXPIRED:
        change = finish(job, Outcome.LOST, lease=job.lease, now=now, retry_delay=retry_delay)
        why = "no longer held this attempt (its result was never recorded)"
        rule = ending_rule(None, refused=False, failed=change.state is JobState.FAILED)
        return LostAttempt(change, LOST_ERROR_TYPE, f"worker {worker_id} {why}", rule)
    change = _worker_loss(job, now, max_worker_losses)
    message = (
        f"worker {worker_id} stopped heartbeating for more than {heartbeat_timeout:g}s "
        f"while running this job (worker loss {change.worker_losses} in a row): "
        + worker_loss_note(change, max_worker_losses, "worker")
    )
    crash_loop = is_crash_loop(change, max_worker_losses)
    return LostAttempt(
        change, LOST_ERROR_TYPE, message, Rule.MAX_WORKER_LOSSES if crash_loop else None
    )


def lose_shared(
    job: JobSnapshot, *, lease: str, now: datetime, max_worker_losses: int | None
) -> Change:
    """The attempt's child process died on its own with other jobs in flight beside it:
    which one killed it is not known. As for a worker loss (:data:`Action.WORKER_LOST`), the
    attempt is not counted and the job runs again at once, but the loss counts toward the
    crash-loop bound: the ``max_worker_losses``-th in a row (None: no bound) fails the job
    (:func:`is_crash_loop`), so a job that kills its child ends ``failed`` while its siblings,
    lost once beside it, run again. Raises StaleLease when ``lease`` is not the job's lease."""
    if job.lease != lease:
        raise StaleLease(f"lose_shared refused: lease {lease!r} is not the job's current lease")
    return _worker_loss(job, now, max_worker_losses)


def _worker_loss(job: JobSnapshot, now: datetime, max_worker_losses: int | None) -> Change:
    """A loss that is not the job's fault (:data:`Action.WORKER_LOST`): the attempt is not
    counted and the job runs again at once, unless this is the ``max_worker_losses``-th such
    loss in a row (None: no bound): then it fails as a crash loop."""
    waiting, failed = next_states(job.state, Action.WORKER_LOST)
    losses = job.worker_losses + 1
    if max_worker_losses is not None and losses >= max_worker_losses:
        return _final(failed, job, job.attempts - 1, now, worker_losses=losses)
    return _waiting(waiting, job, now)._replace(worker_losses=losses)


def worker_loss_note(change: Change, max_worker_losses: int | None, taken_down: str) -> str:
    """What a worker loss's ``change`` did, for its error: the crash-loop verdict or the
    requeue. ``taken_down``: what a crash-looping job takes down ("worker", "child process")."""
    if is_crash_loop(change, max_worker_losses):
        return (
            f"max_worker_losses = {max_worker_losses} reached, it looks like a crash loop (the "
            f"job takes its {taken_down} down); fix the job, then retry it"
        )
    return "requeued without using an attempt"


def is_crash_loop(change: Change, max_worker_losses: int | None) -> bool:
    """Whether ``change`` (a worker loss's) failed the job as a crash loop."""
    return (
        change.state is JobState.FAILED
        and max_worker_losses is not None
        and change.worker_losses >= max_worker_losses
    )


def _final(
    state: JobState,
    job: JobSnapshot,
    attempts: int,
    now: datetime,
    *,
    worker_losses: int | None = None,
    deferrals: int | None = None,
) -> Change:
    return Change(
        state,
        attempts,
        job.max_attempts,
        None,
        job.run_at,
        now,
        job.worker_losses if worker_losses is None else worker_losses,
        job.deferrals if deferrals is None else deferrals,
    )


def _after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=max(seconds, 0.0))


def mermaid_diagram() -> str:
    """A Mermaid state diagram drawn from :data:`TRANSITIONS` (used by the README)."""
    lines = ["stateDiagram-v2", "    [*] --> requested"]
    for (source, event), targets in TRANSITIONS.items():
        for target in targets:
            lines.append(f"    {source.value} --> {target.value}: {event.value}")
    for state in (_S, _F, _C):
        lines.append(f"    {state.value} --> [*]")
    return "\n".join(lines)
