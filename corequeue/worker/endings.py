"""How an attempt a child reported on ends: the core decides (``lifecycle.finish``, or
``lifecycle.interrupt`` for the worker's own shutdown), and this builds the ending the store
records; and what became of running jobs that no longer run under their lease here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corequeue.backoff import max_worker_losses_for, retry_delay_for
from corequeue.core import lifecycle
from corequeue.core.policy import Rule, ending_rule
from corequeue.core.states import JobState, Outcome
from corequeue.executor.task import TaskResult
from corequeue.store.records import AttemptEnd, ClaimedJob
from corequeue.worker.pids import pid_of

#: Outcomes that are never retried: their endings need no retry delay.
_NO_RETRY = frozenset({Outcome.SUCCEEDED, Outcome.DEFERRED, Outcome.CANCELLED})
#: Outcomes whose endings apply no retry rule and are no deferral (see _rule and
#: _too_many_deferrals): decide asks neither about them.
_NO_RULE = frozenset({Outcome.SUCCEEDED, Outcome.CANCELLED})
_FAILED = JobState.FAILED


def decide(
    job: ClaimedJob,
    result: TaskResult,
    now: datetime,
    worker_id: str,
    *,
    interrupted: bool,
    max_deferrals: int | None = None,
    unknown_job_timeout: float = 3600.0,
    max_worker_losses: int | None = None,
) -> AttemptEnd:
    """The ending of ``job``'s attempt that ``result`` reports. ``interrupted``: the worker's
    own shutdown killed the child, so a ``lost`` attempt is requeued uncounted. A job this
    worker could not resolve goes back uncounted, and fails ``unknown_job_timeout`` seconds
    after it was enqueued; a deferral past ``max_deferrals`` fails the job; see _lost_shared."""
    # When the attempt ended: when its child saw it end (its result may arrive later, with
    # the next ones), or ``now`` if the child did not say (a lost or timed-out attempt).
    if result.ended_at is not None:
        ended = datetime.fromtimestamp(result.ended_at, UTC)
        if ended < now:
            now = ended
    outcome = result.outcome
    if (interrupted and outcome is Outcome.LOST) or result.unresolved or result.crash_shared:
        change, error_message, rule = _uncounted(
            job, result, now, interrupted, unknown_job_timeout, max_worker_losses
        )
    else:
        change, error_message, rule = _finished(job, result, now, max_deferrals)
    # By position, in AttemptEnd's field order (once per job: keywords cost twice as much).
    return AttemptEnd(
        job.id,
        job.lease,
        job.attempts,  # attempt
        outcome,
        change,
        worker_id,
        now - timedelta(0, result.duration),  # started_at
        now,  # finished_at
        result.result,
        result.error_type,
        error_message,
        result.traceback,
        # For its log line: name, queue, priority, source, run_at, the child's pid.
        job.name,
        job.queue,
        job.priority,
        job.source,
        job.run_at,
        pid_of(job.id),
        job.created_at,  # enqueued_at
        None if rule is None else rule.value,
    )


def _finished(
    job: ClaimedJob, result: TaskResult, now: datetime, max_deferrals: int | None
) -> tuple[lifecycle.Change, str | None, Rule | None]:
    """The core's change, the error and the rule of an attempt that finished in its child (or
    was lost, timed out or cancelled there): ``lifecycle.finish``."""
    outcome = result.outcome
    change = lifecycle.finish(
        job.snapshot(),
        outcome,
        lease=job.lease,
        now=now,
        retry_delay=_retry_delay(job, result),
        defer_delay=result.defer_delay,
        defer_counts=result.defer_counts,
        max_deferrals=max_deferrals,
        retryable=not result.no_retry,
    )
    if outcome in _NO_RULE:
        return change, result.error_message, None
    message = _too_many_deferrals(result, change, max_deferrals) or result.error_message
    return change, message, _rule(result, change, max_deferrals)


def _uncounted(
    job: ClaimedJob,
    result: TaskResult,
    now: datetime,
    interrupted: bool,
    unknown_job_timeout: float,
    max_worker_losses: int | None,
) -> tuple[lifecycle.Change, str | None, Rule | None]:
    """The core's change, the error and the rule of an attempt that uses no attempt: lost to
    the worker's own shutdown (``interrupted``), unresolved, or lost with others in flight."""
    message = result.error_message
    if interrupted and result.outcome is Outcome.LOST:
        change = lifecycle.interrupt(job.snapshot(), lease=job.lease, now=now)
        return change, f"{message}: requeued without using an attempt", None
    if result.unresolved:
        change, message = _unresolved(job, message, now, unknown_job_timeout)
        return change, message, Rule.UNKNOWN_JOB_TIMEOUT if change.state is _FAILED else None
    change, message = _lost_shared(job, message, now, max_worker_losses)
    return change, message, Rule.MAX_WORKER_LOSSES if change.state is _FAILED else None


def _rule(result: TaskResult, change: lifecycle.Change, max_deferrals: int | None) -> Rule | None:
    """The rule the core's ``change`` of a finished attempt applied, for its ending."""
    if result.outcome is Outcome.DEFERRED:
        if change.state is not JobState.FAILED:
            return None
        too_often = lifecycle.deferred_too_often(change, max_deferrals)
        return Rule.MAX_DEFERRALS if too_often else Rule.RETRIES_EXHAUSTED
    if result.outcome not in (Outcome.ERRORED, Outcome.TIMED_OUT, Outcome.LOST):
        return None
    return ending_rule(
        None if result.rule is None else Rule(result.rule),
        refused=result.no_retry,
        failed=change.state is JobState.FAILED,
    )


def _retry_delay(job: ClaimedJob, result: TaskResult) -> float:
    """The wait before a retry: the child's, else (it could not ask the job) the worker's."""
    if result.retry_delay is not None:
        return result.retry_delay
    return 0.0 if result.outcome in _NO_RETRY else retry_delay_for(job.name, job.attempts)


def _too_many_deferrals(
    result: TaskResult, change: lifecycle.Change, max_deferrals: int | None
) -> str | None:
    """The error of a deferral that failed the job for deferring past ``max_deferrals``."""
    if result.outcome is Outcome.DEFERRED and lifecycle.deferred_too_often(change, max_deferrals):
        return lifecycle.too_many_deferrals_message(max_deferrals or 0)
    return None


def _lost_shared(
    job: ClaimedJob, message: str | None, now: datetime, default: int | None
) -> tuple[lifecycle.Change, str]:
    """The core's ending of an attempt lost with its child beside other jobs in flight, and
    its error: no attempt used, but a step toward the crash-loop bound ``max_worker_losses``
    (the job class's own bound first)."""
    bound = None if default is None else max_worker_losses_for(job.name, default)
    change = lifecycle.lose_shared(
        job.snapshot(), lease=job.lease, now=now, max_worker_losses=bound
    )
    note = lifecycle.worker_loss_note(change, bound, "child process")
    return change, f"{message} (loss {change.worker_losses} in a row: {note})"


def _unresolved(
    job: ClaimedJob, message: str | None, now: datetime, timeout: float
) -> tuple[lifecycle.Change, str]:
    """The core's ending of an attempt whose job name could not be resolved, and its error."""
    change = lifecycle.unresolved(
        job.snapshot(),
        lease=job.lease,
        now=now,
        enqueued_at=job.created_at or job.started_at,
        timeout=timeout,
    )
    if change.state is JobState.FAILED:
        note = f"unresolvable for unknown_job_timeout = {timeout:g}s since it was enqueued"
    else:
        note = "requeued without using an attempt, for a worker that can resolve it"
    return change, f"{message} ({note})"
