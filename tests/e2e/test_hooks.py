"""Lifecycle hooks in a real ``corequeue run`` (issue 20), on SQLite and PostgreSQL: every event
fires exactly once and carries the job's context (the fields of ``corequeue.current_job()``)
checked against the row, the endings their outcome, error and the retry rule that applied; a
hook that raises changes nothing (testing.function_jobs registers one for job_started,
job_finished and job_failed; this test one for job_enqueued)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import corequeue
from corequeue import JobState
from corequeue.store.queries import Store
from corequeue.store.records import JobRecord
from testing import function_jobs as fj
from testing.e2e import WorkerFactory

IMPORTS = ("testing.function_jobs",)
CONTEXT_FIELDS = {
    "id",
    "name",
    "queue",
    "priority",
    "attempt",
    "max_attempts",
    "enqueued_at",
    "run_at",
    "worker_id",
    "source",
}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def check_context(job: dict[str, Any], row: JobRecord) -> None:
    """The event's context names the job as its row does."""
    assert set(job) == CONTEXT_FIELDS
    assert (job["id"], job["name"], job["queue"]) == (row.id, row.name, row.queue)
    assert (job["priority"], job["max_attempts"]) == (row.priority, row.max_attempts)
    assert when(job["enqueued_at"]) == row.created_at
    assert job["source"] == row.source and "test_hooks.py:" in row.source


@pytest.fixture
def enqueued(store: Store) -> Any:
    """The job_enqueued events of this process, with a hook beside that raises."""
    seen: list[dict[str, Any]] = []

    def keep(event: corequeue.JobEvent) -> None:
        seen.append(fj.event_record(event))

    def boom(event: corequeue.JobEvent) -> None:
        raise RuntimeError("a raising job_enqueued hook changes nothing")

    corequeue.on("job_enqueued")(boom)
    corequeue.on("job_enqueued")(keep)
    yield seen
    corequeue.hooks.remove("job_enqueued", boom)
    corequeue.hooks.remove("job_enqueued", keep)


def test_every_event_fires_once_with_the_jobs_context(
    store: Store,
    database_url: str,
    workers: WorkerFactory,
    tmp_path: Path,
    enqueued: list[dict[str, Any]],
) -> None:
    path, hook_log = str(tmp_path / "runs.jsonl"), tmp_path / "hooks.jsonl"
    before = datetime.now(UTC)
    ok = fj.plain.run_in_worker(path, 1, priority=4)
    exhausted = fj.Exhausted(path).run_in_worker()  # 2 attempts, both fail: retries_exhausted
    discarded = fj.discarded.run_in_worker(path)  # retries=5, fails at once: discard_on
    handles = [ok, exhausted, discarded]
    assert [e["id"] for e in enqueued] == [h.id for h in handles]  # once each, here
    worker = workers(
        database_url, "--burst", imports=IMPORTS, env={"COREQUEUE_TEST_HOOK_LOG": str(hook_log)}
    )
    assert worker.wait_exit() == 0, worker.log()
    assert ok.wait(timeout=5.0) == 2

    rows = {h.id: store.job_get(h.id) for h in handles}
    for event in enqueued:
        row = rows[event["id"]]
        assert row is not None
        check_context(event["job"], row)
        assert event["job"]["attempt"] == 0 and event["job"]["worker_id"] == ""
        # Due at once (no delay): run_at is when it was enqueued (the row's moved on retry).
        assert when(event["job"]["run_at"]) == row.created_at >= before

    logged = lines(hook_log)
    counts = Counter((e["event"], e["id"], e["job"]["attempt"]) for e in logged)
    assert all(n == 1 for n in counts.values()), counts
    expected = {
        ok.id: [1],
        exhausted.id: [1, 2],
        discarded.id: [1],
    }
    for job_id, attempts in expected.items():
        row = rows[job_id]
        assert row is not None
        for number in attempts:
            for name in ("job_started", "job_finished"):
                assert counts[(name, job_id, number)] == 1, (name, job_id, number)
        for event in (e for e in logged if e["id"] == job_id):
            check_context(event["job"], row)
            assert event["job"]["worker_id"] == row.worker_id
        failed = [e for e in logged if e["event"] == "job_failed" and e["id"] == job_id]
        assert len(failed) == (row.state is JobState.FAILED)
    assert not [e for e in logged if e["event"] == "job_lost"]

    finished = {(e["id"], e["job"]["attempt"]): e for e in logged if e["event"] == "job_finished"}
    assert finished[(ok.id, 1)]["outcome"] == "succeeded" and finished[(ok.id, 1)]["rule"] is None
    assert finished[(exhausted.id, 1)]["error"] == "attempt 1 failed"
    assert finished[(discarded.id, 1)]["rule"] == "discard_on"

    failed = {e["id"]: e for e in logged if e["event"] == "job_failed"}
    assert set(failed) == {exhausted.id, discarded.id}
    for job_id, attempt, rule in (
        (exhausted.id, 2, "retries_exhausted"),
        (discarded.id, 1, "discard_on"),
    ):
        event = failed[job_id]
        row = rows[job_id]
        assert row is not None and row.error is not None
        assert (event["job"]["attempt"], event["outcome"], event["rule"]) == (
            attempt,
            "errored",
            rule,
        )
        assert event["error"] in row.error
        assert when(event["job"]["run_at"]) == row.run_at  # the last attempt's due time
    # The hooks that raise (here and in the worker) changed nothing.
    assert [store.job_get(h.id).state for h in handles] == [  # type: ignore[union-attr]
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.FAILED,
    ]
