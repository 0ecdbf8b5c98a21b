"""A worker never leaves a job ``running`` that it no longer holds.

With ``--synchronous-commit off`` a database crash can forget a result the worker committed;
the job would then look as if this live worker still ran it. The heartbeat finds such jobs and
records them lost, so they run again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from corequeue.config import Settings
from corequeue.core.states import JobState, Outcome
from corequeue.store.queries import Store
from corequeue.worker import Heartbeat, Worker
from testing.e2e import WorkerFactory
from testing.jobs import Add


def no_delay(name: str, attempt: int) -> float:
    return 0.0


def test_a_running_job_the_worker_does_not_hold_is_recorded_lost_and_retried(
    store: Store, database_url: str
) -> None:
    handle = Add(1, 2).run_in_worker(retries=1)
    worker = Worker(store, Settings(database_url=database_url, imports=("testing.jobs",)))
    now = datetime.now(UTC)
    store.job_claim_many(queues=[], limit=1, lease="a" * 32, worker_id=worker.id, now=now)
    # The worker has no record of this claim (as if its result had been forgotten).

    Heartbeat(worker).run_once(now)

    job = store.job_get(handle.id)
    assert job is not None and job.state is JobState.REQUESTED and job.lease is None
    (attempt,) = store.attempt_list(handle.id)
    assert attempt.outcome is Outcome.LOST
    assert attempt.error_message == (
        f"worker {worker.id} no longer held this attempt (its result was never recorded)"
    )


def test_jobs_the_worker_holds_are_left_alone(store: Store) -> None:
    handle = Add(1, 2).run_in_worker()
    now = datetime.now(UTC)
    (claimed,) = store.job_claim_many(queues=[], limit=1, lease="b" * 32, worker_id="w", now=now)
    other = Add(3, 4).run_in_worker()
    later = datetime.now(UTC)
    store.job_claim_many(queues=[], limit=1, lease="c" * 32, worker_id="someone-else", now=later)

    rescued = store.job_orphan_rescue_many(
        worker_id="w", held={(claimed.id, claimed.lease)}, now=now, retry_delay=no_delay
    )

    assert rescued == []
    for job_id in (handle.id, other.id):
        job = store.job_get(job_id)
        assert job is not None and job.state is JobState.RUNNING


def test_a_worker_with_asynchronous_commits_runs_every_job_once(
    store: Store, database_url: str, workers: WorkerFactory
) -> None:
    from corequeue import enqueue_many

    handles = enqueue_many(Add(i, i) for i in range(50))
    worker = workers(database_url, "--synchronous-commit", "off")

    assert [h.wait(timeout=60) for h in handles] == [2 * i for i in range(50)]
    assert worker.stop() == 0
    runs = [[a.outcome for a in store.attempt_list(h.id)] for h in handles]
    assert runs == [[Outcome.SUCCEEDED]] * 50  # one attempt each
