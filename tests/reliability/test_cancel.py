"""Cancellation: a waiting job at once; a running one by stopping its child within a second or
two, recorded as a ``cancelled`` attempt; a claimed job still queued in a child never runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from corequeue.store.queries import Store
from testing.faults import alive, run_cli, wait_for
from tests.reliability.conftest import Spawner, attempts_by_job
from tests.reliability_jobs import Touch, run_counts, runs


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
