"""How an attempt a child reported on ends: the core decides (``lifecycle.finish``, or
``lifecycle.interrupt`` for the worker's own shutdown), and this builds the ending the store
records; and what became of running jobs that no longer run under their lease here.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from datetime import datetime, timedelta

from corequeue.backoff import retry_delay_for
from corequeue.core import lifecycle
from corequeue.core.states import JobState, Outcome
from corequeue.executor.task import TaskResult
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd, ClaimedJob

#: Outcomes that are never retried: their endings need no retry delay.
_NO_RETRY = frozenset({Outcome.SUCCEEDED, Outcome.DEFERRED, Outcome.CANCELLED})


def decide(
    job: ClaimedJob, result: TaskResult, now: datetime, worker_id: str, *, interrupted: bool
) -> AttemptEnd:
    """The ending of ``job``'s attempt that ``result`` reports. ``interrupted``: the worker's
    own shutdown killed the child, so a ``lost`` attempt is requeued without being counted."""
    retry_delay = result.retry_delay
    if retry_delay is None:  # not decided in the child (it could not ask the job)
        retry_delay = (
            0.0 if result.outcome in _NO_RETRY else retry_delay_for(job.name, job.attempts)
        )
    error_message = result.error_message
    if interrupted and result.outcome is Outcome.LOST:
        change = lifecycle.interrupt(job.snapshot(), lease=job.lease, now=now)
        error_message = f"{error_message}: requeued without using an attempt"
    else:
        change = lifecycle.finish(
            job.snapshot(),
            result.outcome,
            lease=job.lease,
            now=now,
            retry_delay=retry_delay,
            defer_delay=result.defer_delay,
            defer_counts=result.defer_counts,
        )
    # By position, in AttemptEnd's field order (once per job: keywords cost twice as much).
    return AttemptEnd(
        job.id,
        job.lease,
        job.attempts,  # attempt
        result.outcome,
        change,
        worker_id,
        now - timedelta(seconds=result.duration),  # started_at
        now,  # finished_at
        result.result,
        result.error_type,
        error_message,
        result.traceback,
        job.name,
        job.queue,
    )


def gone_states(
    store: Store, gone: Mapping[int, JobState | None] | Set[int]
) -> Mapping[int, JobState | None]:
    """Each gone job's state now (None: deleted), from ``store.job_leases_gone_many``'s answer;
    when that answer is the ids alone, their states are read (rare: a cancel, a rescue)."""
    if isinstance(gone, Mapping):
        return gone
    states: dict[int, JobState | None] = {}
    for job_id in gone:
        job = store.job_get(job_id)
        states[job_id] = job.state if job is not None else None
    return states
