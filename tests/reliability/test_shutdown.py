"""SIGTERM during a busy run: no new claims, unstarted jobs go back with their attempt count
unchanged, running ones finish within the grace period, exit 0. Past the grace period (or on a
second signal) running jobs are killed and requeued without using an attempt."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from corequeue import enqueue_many
from corequeue.store.queries import Store
from testing.faults import alive, wait_for
from testing.reliability_jobs import Touch, run_counts, runs
from tests.reliability.conftest import Spawner, attempts_by_job, state_counts


def _url(store: Store) -> str:
    return store.url.render_as_string(hide_password=False)


def test_sigterm_finishes_running_jobs_and_releases_unstarted_ones(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    handles = enqueue_many([Touch(log, i, 1.5) for i in range(10)])
    worker = spawn(
        _url(pg_store),
        "--max-processes",
        "2",
        "--max-pending-per-process",
        "5",
        "--grace-period",
        "20",
    )
    wait_for(lambda: len(runs(log)) >= 2, timeout=60, what="two jobs to start")
    assert state_counts(pg_store)["running"] == 10  # 2 started, 8 claimed but not started
    worker.signal(signal.SIGTERM)

    assert worker.wait_exit(60) == 0, worker.log()
    counts = run_counts(log)
    ran = {h.id for h, key in zip(handles, range(10), strict=True) if counts[key]}
    assert len(ran) == 2 and max(counts.values()) == 1
    jobs = {h.id: pg_store.job_get(h.id) for h in handles}
    for job_id, job in jobs.items():
        assert job is not None
        if job_id in ran:
            assert (job.state.value, job.attempts) == ("succeeded", 1)
        else:
            assert (job.state.value, job.attempts, job.lease) == ("requested", 0, None)
    attempts = attempts_by_job(pg_store)
    assert sorted(a.outcome for rows in attempts.values() for a in rows) == ["succeeded"] * 2
    assert '"released": 8' in worker.log().splitlines()[-1]  # the final stats line


def test_grace_period_over_kills_and_requeues_without_using_an_attempt(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    # retries=0: were the killed attempt counted, these jobs would fail instead.
    handles = enqueue_many([Touch(log, i, 120) for i in range(2)], retries=0)
    worker = spawn(_url(pg_store), "--max-processes", "2", "--grace-period", "1")
    wait_for(lambda: len(runs(log)) == 2, timeout=60, what="both jobs to start")
    children = worker.children()
    worker.signal(signal.SIGTERM)

    assert worker.wait_exit(30) == 0, worker.log()
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=10, what="children gone")
    attempts = attempts_by_job(pg_store)
    for handle in handles:
        job = pg_store.job_get(handle.id)
        assert job is not None
        assert (job.state.value, job.attempts, job.max_attempts) == ("requested", 0, 1)
        (row,) = attempts[handle.id]
        assert row.outcome == "lost"
        assert row.error_message == (
            "the worker's grace period ran out: requeued without using an attempt"
        )
    assert "grace period over: stopping 2 running job(s)" in worker.log()


def test_second_signal_stops_at_once_and_requeues(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    handles = enqueue_many([Touch(log, i, 120) for i in range(4)], retries=0)
    worker = spawn(
        _url(pg_store),
        "--max-processes",
        "2",
        "--max-pending-per-process",
        "2",
        "--grace-period",
        "300",
    )
    wait_for(lambda: len(runs(log)) == 2, timeout=60, what="two jobs to start")
    worker.signal(signal.SIGTERM)
    worker.wait_log("stopping: no new jobs")
    started = time.monotonic()
    worker.signal(signal.SIGINT)

    assert worker.wait_exit(30) == 1, worker.log()  # stopped at once: not a clean stop
    assert time.monotonic() - started < 15
    assert "second stop signal: stopping at once" in worker.log()
    for handle in handles:
        job = pg_store.job_get(handle.id)
        assert job is not None
        assert (job.state.value, job.attempts) == ("requested", 0)
    outcomes = sorted(a.outcome for rows in attempts_by_job(pg_store).values() for a in rows)
    assert outcomes == ["lost", "lost"]  # the two that ran; the two unstarted leave no row
