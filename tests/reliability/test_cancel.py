"""Cancellation: a waiting job at once; a running one by stopping its child within a second or
two, recorded as a ``cancelled`` attempt; a claimed job still queued in a child never runs."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from corequeue.store.queries import Store
from testing.faults import alive, run_cli, wait_for
from testing.reliability_jobs import Touch, run_counts, runs
from tests.reliability.conftest import Spawner, attempts_by_job


def test_cancel_waiting_and_running_jobs(pg_store: Store, spawn: Spawner, tmp_path: Path) -> None:
    url = pg_store.url.render_as_string(hide_password=False)
    log = str(tmp_path / "runs.jsonl")
    waiting = Touch(log, "waiting").run_in_worker(delay=3600)
    cancelled = pg_store.job_cancel(waiting.id, now=datetime.now(UTC))
    assert cancelled.state.value == "cancelled" and cancelled.attempts == 0

    running = Touch(log, "running", 120).run_in_worker()
    queued = Touch(log, "queued").run_in_worker()  # claimed too, queued behind it in the child
    worker = spawn(url, "--max-processes", "1", "--max-pending-per-process", "5")
    first = wait_for(lambda: runs(log), timeout=60, what="the long job to start")[0]
    assert first["key"] == "running"
    assert pg_store.job_get(queued.id).state.value == "running"  # type: ignore[union-attr]

    # A claimed job that has not started yet: cancelled through the API, it must never run.
    pg_store.job_cancel(queued.id, now=datetime.now(UTC))
    # The running one, through the command line: its child is stopped within a second or two.
    result = run_cli(["jobs", "cancel", str(running.id), "--database-url", url])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"job {running.id} cancelled"
    stopped = time.monotonic()
    wait_for(lambda: not alive(first["pid"]), timeout=10, what="the cancelled job's child to stop")
    assert time.monotonic() - stopped < 3

    after = Touch(log, "after").run_in_worker()
    assert after.wait(timeout=60) == "after", worker.log()
    assert run_counts(log) == {"running": 1, "after": 1}  # "queued" never ran
    for handle in (running, queued):
        job = pg_store.job_get(handle.id)
        assert job is not None and job.state.value == "cancelled"
        (row,) = attempts_by_job(pg_store)[handle.id]
        assert (row.outcome, row.error_message) == (
            "cancelled",
            "cancelled by request while running",
        )
    assert worker.returncode is None


def test_a_running_job_cancelled_is_counted_once_without_a_warning(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    # The store records the cancel (the job and its attempt); the worker stops the child and
    # records nothing of its own for it: no refused ending, no warning, counted as cancelled.
    url = pg_store.url.render_as_string(hide_password=False)
    log = str(tmp_path / "runs.jsonl")
    running = Touch(log, "running", 120).run_in_worker()
    worker = spawn(url, "--max-processes", "1")
    first = wait_for(lambda: runs(log), timeout=60, what="the long job to start")[0]

    result = run_cli(["jobs", "cancel", str(running.id), "--database-url", url])
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not alive(first["pid"]), timeout=10, what="the cancelled job's child to stop")
    worker.wait_log(f"cancelled job_id={running.id} name=", timeout=10)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0

    lines = worker.log().splitlines()
    assert [line for line in lines if " WARNING " in line or " ERROR " in line] == []
    (stopped,) = [line for line in lines if " stopped: {" in line]
    stats = json.loads(stopped.split(" stopped: ", 1)[1])
    assert (stats["cancelled"], stats["refused"], stats["failed"]) == (1, 0, 0)
    job = pg_store.job_get(running.id)
    assert job is not None and job.state.value == "cancelled"
    (row,) = attempts_by_job(pg_store)[running.id]
    assert row.outcome == "cancelled"
