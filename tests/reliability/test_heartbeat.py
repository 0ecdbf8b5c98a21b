"""Heartbeats and rescue: the worker row stays fresh; a SIGKILLed worker's running jobs are
rescued by one live worker within the heartbeat timeout and a bit, exactly once; a rescued
attempt's late result is refused by its lease."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from corequeue import enqueue_many
from corequeue.core import lifecycle
from corequeue.core.states import JobState, Outcome
from corequeue.store import schema
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd, WorkerRecord
from testing.faults import wait_for
from testing.reliability_jobs import Touch, run_counts, runs
from tests.reliability.conftest import Spawner, attempts_by_job, worker_id_of

TIMEOUT = 3.0  # --heartbeat-timeout in conftest.FAST


def _url(store: Store) -> str:
    return store.url.render_as_string(hide_password=False)


def test_the_worker_row_is_kept_fresh(pg_store: Store, spawn: Spawner) -> None:
    worker = spawn(_url(pg_store))
    worker_id = worker_id_of(pg_store, worker.pid)

    def beat() -> datetime:
        return next(w.last_beat_at for w in pg_store.worker_list() if w.id == worker_id)

    first = beat()
    second = wait_for(lambda: (b := beat()) > first and b, timeout=10, what="a new beat")
    third = wait_for(lambda: (b := beat()) > second and b, timeout=10, what="another beat")
    assert third - first < timedelta(seconds=TIMEOUT)
    record = next(w for w in pg_store.worker_list() if w.id == worker_id)
    assert record.queues == [] and record.stats["running"] == 0
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0
    assert all(w.id != worker_id for w in pg_store.worker_list())  # a clean stop leaves no row


def test_a_killed_workers_jobs_are_rescued_once_by_one_live_worker(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    url = _url(pg_store)
    handles = enqueue_many([Touch(log, i, 30) for i in range(2)], queue="b", retries=1)
    victim = spawn(url, "--queue", "b", "--max-processes", "2")
    victim_id = worker_id_of(pg_store, victim.pid)
    # Two live rescuers that serve another queue: only rescue can move queue b's jobs.
    rescuers = [spawn(url, "--queue", "a") for _ in range(2)]
    for rescuer in rescuers:
        worker_id_of(pg_store, rescuer.pid)
    wait_for(lambda: len(runs(log)) == 2, timeout=60, what="both jobs to start")
    victim.kill()
    killed_at = time.monotonic()

    def rescued() -> bool:
        return all(pg_store.job_get(h.id).state is JobState.REQUESTED for h in handles)  # type: ignore[union-attr]

    wait_for(rescued, timeout=30, what="the rescue")
    assert time.monotonic() - killed_at < TIMEOUT + 5  # heartbeat timeout and a bit
    attempts = attempts_by_job(pg_store)
    for handle in handles:
        (row,) = attempts[handle.id]
        assert (row.outcome, row.error_type, row.worker_id) == ("lost", "WorkerLost", victim_id)
        assert row.error_message == (
            f"worker {victim_id} stopped heartbeating for more than 3s while running this job"
            " (worker loss 1 in a row): requeued without using an attempt"
        )
        assert pg_store.job_get(handle.id).attempts == 0  # type: ignore[union-attr]
    logs = "".join(r.log() for r in rescuers)
    for handle in handles:
        assert logs.count(f"rescued job_id={handle.id} ") == 1, logs
    assert all(w.id != victim_id for w in pg_store.worker_list())
    assert all(r.returncode is None for r in rescuers)


# serial: freezes a worker and waits for its late report within a fixed deadline; beside the
# parallel tests it timed out (load average 13 on 2 cores)
@pytest.mark.serial
def test_a_rescued_attempts_late_result_is_refused(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    """A worker frozen (SIGSTOP) past the heartbeat timeout while its child finishes a job:
    another worker rescues the job; when the frozen one wakes, its result is refused."""
    log = str(tmp_path / "runs.jsonl")
    url = _url(pg_store)
    handle = Touch(log, "late", 1.0).run_in_worker(queue="b", retries=1)
    frozen = spawn(url, "--queue", "b", "--max-processes", "1")
    frozen_id = worker_id_of(pg_store, frozen.pid)
    wait_for(lambda: runs(log), timeout=60, what="the job to start")
    frozen.signal(signal.SIGSTOP)
    try:
        rescuer = spawn(url, "--queue", "a")
        wait_for(
            lambda: pg_store.job_get(handle.id).state is JobState.REQUESTED,  # type: ignore[union-attr]
            timeout=30,
            what="the rescue",
        )
    finally:
        frozen.signal(signal.SIGCONT)
    # Woken up, the frozen worker reports its (late) result: refused, the job runs again.
    assert handle.wait(timeout=60) == "late"
    frozen.wait_log(f"refused job_id={handle.id} attempt=1 outcome=succeeded", timeout=30)
    rows = attempts_by_job(pg_store)[handle.id]
    # The lost attempt used none: the run after it is attempt 1 again.
    assert [(a.attempt, a.outcome) for a in rows] == [(1, "lost"), (1, "succeeded")]
    assert rows[0].worker_id == frozen_id
    assert run_counts(log) == {"late": 2}
    assert rescuer.returncode is None and frozen.returncode is None


def _running_job(store: Store, *, worker_id: str | None, started: datetime) -> int:
    handle = Touch("unused", "x").run_in_worker()
    jobs = schema.jobs
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == handle.id)
            .values(
                state="running",
                lease=f"lease{handle.id}",
                worker_id=worker_id,
                started_at=started,
                attempts=1,
            )
        )
    return handle.id


def test_rescue_of_workers_without_a_row(store: Store) -> None:
    """A job claimed under a worker id that never wrote a heartbeat row (or none at all) is
    rescued once it has run longer than the timeout, not before. Both engines."""
    now = datetime.now(UTC)
    old = _running_job(store, worker_id="never-beat", started=now - timedelta(seconds=10))
    no_worker = _running_job(store, worker_id=None, started=now - timedelta(seconds=10))
    fresh = _running_job(store, worker_id="never-beat-2", started=now - timedelta(seconds=1))
    ends = store.job_rescue_many(now=now, heartbeat_timeout=3, retry_delay=lambda n, a: 0.0)
    assert sorted(e.job_id for e in ends) == [old, no_worker]
    assert store.job_get(fresh).state is JobState.RUNNING  # type: ignore[union-attr]
    assert store.job_rescue_many(now=now, heartbeat_timeout=3, retry_delay=lambda n, a: 0) == []


def test_a_rescuer_never_rescues_itself(store: Store) -> None:
    """After an outage the rescue may get through before the worker's own heartbeat: its
    row is stale then, but the worker asking is alive. Its jobs and its row stay; another
    silent worker's job is rescued. Both engines."""
    now = datetime.now(UTC)
    for worker_id in ("me", "other"):
        stale = now - timedelta(seconds=10)
        store.worker_beat(WorkerRecord(worker_id, "host", 1, [], stale, stale))
    mine = _running_job(store, worker_id="me", started=now - timedelta(seconds=10))
    theirs = _running_job(store, worker_id="other", started=now - timedelta(seconds=10))

    ends = store.job_rescue_many(
        now=now, heartbeat_timeout=3, retry_delay=lambda n, a: 0.0, rescuer="me"
    )

    assert [e.job_id for e in ends] == [theirs]
    assert store.job_get(mine).state is JobState.RUNNING  # type: ignore[union-attr]
    assert [w.id for w in store.worker_list()] == ["me"]


def test_concurrent_rescuers_record_each_attempt_once(pg_store: Store) -> None:
    now = datetime.now(UTC)
    ids = [
        _running_job(pg_store, worker_id="dead", started=now - timedelta(seconds=60))
        for _ in range(40)
    ]
    results: list[list[AttemptEnd]] = []
    barrier = threading.Barrier(4)

    def rescue() -> None:
        store = Store.from_url(pg_store.url)
        barrier.wait()
        results.append(
            store.job_rescue_many(now=now, heartbeat_timeout=3, retry_delay=lambda n, a: 0.0)
        )
        store.dispose()

    threads = [threading.Thread(target=rescue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    rescued = sorted(e.job_id for ends in results for e in ends)
    assert rescued == sorted(ids)  # every attempt once, none twice
    attempts = attempts_by_job(pg_store)
    assert all(len(attempts[i]) == 1 for i in ids)


def test_a_late_result_is_refused_by_its_lease(store: Store) -> None:
    now = datetime.now(UTC)
    job_id = _running_job(store, worker_id="dead", started=now - timedelta(seconds=60))
    (rescue,) = store.job_rescue_many(now=now, heartbeat_timeout=3, retry_delay=lambda n, a: 0)
    late = AttemptEnd(
        job_id=job_id,
        lease=rescue.lease,
        attempt=1,
        outcome=Outcome.SUCCEEDED,
        change=lifecycle.Change(JobState.SUCCEEDED, 1, 1, None, now, now),
        worker_id="dead",
        started_at=now,
        finished_at=now,
        result="1",
    )
    assert store.job_finish_many([late]) == []
    job = store.job_get(job_id)
    # Requeued without using an attempt (the worker's death is not the job's fault).
    assert job is not None and job.state is JobState.REQUESTED and job.result is None
    assert job.attempts == 0
    assert [a.outcome for a in store.attempt_list(job_id)] == [Outcome.LOST]
