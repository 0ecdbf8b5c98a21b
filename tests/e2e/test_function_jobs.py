"""Function jobs, async function jobs and class jobs side by side in a real ``corequeue run``
(issue 20), on SQLite and PostgreSQL: the job context in the child against the row, the
retry policy, and each lifecycle hook exactly once per event (hooks that raise change nothing:
testing.function_jobs registers one for job_started, job_finished and job_failed)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import corequeue
from corequeue import JobState
from corequeue.store.queries import Store
from testing import function_jobs as fj
from testing.e2e import WorkerFactory

IMPORTS = ("testing.function_jobs",)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_function_async_and_class_jobs_side_by_side_with_their_context(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "runs.jsonl"
    hook_log = tmp_path / "hooks.jsonl"
    handles = [
        fj.plain.run_in_worker(str(path), 1, queue="default", priority=7),
        fj.async_plain.run_in_worker(str(path), 2),
        *corequeue.enqueue_many([fj.plain.call(str(path), 3), fj.ClassJob(str(path), 4)]),
        fj.charge.run_in_worker(5, "7.00"),
    ]
    worker = workers(
        database_url, "--burst", imports=IMPORTS, env={"COREQUEUE_TEST_HOOK_LOG": str(hook_log)}
    )
    assert worker.wait_exit() == 0, worker.log()
    assert [h.wait(timeout=5.0) for h in handles] == [2, 6, 6, 16, "5:8.00"]

    runs = {int(r["ctx"]["id"]): r for r in lines(path)}
    assert {r["tag"] for r in runs.values()} == {"plain", "async", "class"}
    for job_id, run in runs.items():
        row = store.job_get(job_id)
        assert row is not None and row.state is JobState.SUCCEEDED
        ctx = run["ctx"]
        assert ctx["name"] == row.name and ctx["queue"] == row.queue
        assert int(ctx["priority"]) == row.priority
        assert int(ctx["attempt"]) == row.attempts == 1
        assert int(ctx["max_attempts"]) == row.max_attempts
        assert datetime.fromisoformat(ctx["enqueued_at"]) == row.created_at
        assert datetime.fromisoformat(ctx["run_at"]) == row.run_at
        assert ctx["worker_id"] == row.worker_id
        assert ctx["source"] == row.source and "test_function_jobs.py:" in ctx["source"]
    assert runs[handles[0].id]["ctx"]["priority"] == "7"

    events = Counter((e["event"], e["id"]) for e in lines(hook_log))
    for handle in handles:
        # job_enqueued fired here (no hooks registered in this process but the module's own,
        # which write only with the env variable set): the worker's side fires the rest.
        assert events[("job_started", handle.id)] == 1
        assert events[("job_finished", handle.id)] == 1
        assert events[("job_failed", handle.id)] == 0


def test_discard_on_fails_at_once_and_job_failed_fires_once(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "runs.jsonl"
    hook_log = tmp_path / "hooks.jsonl"
    discarded = fj.discarded.run_in_worker(str(path))  # retries=5
    only = fj.only_timeouts.run_in_worker(str(path))  # retries=2, a KeyError
    fails = fj.fails.run_in_worker(str(path))  # no retries: fails for good at once
    worker = workers(
        database_url,
        "--burst",
        imports=IMPORTS,
        env={"COREQUEUE_TEST_HOOK_LOG": str(hook_log)},
    )
    assert worker.wait_exit() == 0, worker.log()
    for handle, attempts, note in (
        (discarded, 1, "(not retried: ValueError is in discard_on)"),
        (only, 1, "(not retried: KeyError is not in retry_on)"),
    ):
        row = store.job_get(handle.id)
        assert row is not None and row.state is JobState.FAILED
        assert row.attempts == attempts and row.max_attempts > attempts
        assert row.error is not None and note in row.error
    assert [r["tag"] for r in lines(path)].count("discarded") == 1
    events = Counter((e["event"], e["id"]) for e in lines(hook_log))
    for handle in (discarded, only, fails):
        assert events[("job_started", handle.id)] == 1
        assert events[("job_finished", handle.id)] == 1
        assert events[("job_failed", handle.id)] == 1
        assert events[("job_lost", handle.id)] == 0


def test_job_lost_fires_once_per_lost_attempt(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "runs.jsonl"
    hook_log = tmp_path / "hooks.jsonl"
    handle = fj.crash.run_in_worker(str(path))
    worker = workers(
        database_url, "--burst", imports=IMPORTS, env={"COREQUEUE_TEST_HOOK_LOG": str(hook_log)}
    )
    assert worker.wait_exit() == 0, worker.log()
    row = store.job_get(handle.id)
    assert row is not None and row.state in (JobState.FAILED, JobState.REQUESTED)
    lost = [a for a in store.attempt_list(handle.id) if a.outcome.value == "lost"]
    assert lost, worker.log()
    events = Counter((e["event"], e["id"]) for e in lines(hook_log))
    assert events[("job_lost", handle.id)] == len(lost)
    assert events[("job_failed", handle.id)] == (1 if row.state is JobState.FAILED else 0)
    assert events[("job_finished", handle.id)] == 0  # the child died before it could say
    for event in lines(hook_log):  # job_lost and job_failed carry the job's context too
        if event["event"] in ("job_lost", "job_failed"):
            job = event["job"]
            assert (job["id"], job["name"], job["queue"]) == (row.id, row.name, row.queue)
            assert job["source"] == row.source and job["worker_id"] == row.worker_id
            assert datetime.fromisoformat(job["enqueued_at"]) == row.created_at
            assert event["outcome"] == "lost" and job["attempt"] >= 1
