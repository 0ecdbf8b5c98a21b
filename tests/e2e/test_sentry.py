"""corequeue.contrib.sentry: a real worker reports a job that fails for good and an attempt
lost with its child to Sentry, with the job's context (Sentry's transport replaced by one that
writes each event to a file: no network)."""

from __future__ import annotations

import json
from pathlib import Path

from corequeue.core.states import JobState
from corequeue.store.queries import Store
from testing.e2e import WorkerFactory
from testing.sentry_jobs import SENTRY_ENV, ChargeDeclined, Segfault


def test_final_failures_and_lost_attempts_are_reported_with_the_jobs_context(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    declined = ChargeDeclined(12).run_in_worker(queue="billing", retries=1)
    crashed = Segfault().run_in_worker(retries=0)
    sent = tmp_path / "sentry.jsonl"

    worker = workers(
        database_url,
        "--burst",
        env={SENTRY_ENV: str(sent), "COREQUEUE_HOOKS": "corequeue.contrib.sentry"},
        imports=["testing.sentry_jobs"],
    )

    assert worker.wait_exit() == 0, worker.log()
    assert declined.refresh().state is JobState.FAILED
    assert crashed.refresh().state is JobState.FAILED
    events = [json.loads(line) for line in sent.read_text().splitlines()]
    by_job = {(e["contexts"]["corequeue job"]["id"], e["level"]): e for e in events}
    assert sorted(by_job) == sorted(
        [(declined.id, "error"), (crashed.id, "warning"), (crashed.id, "error")]
    ), events  # one report for the declined job: its first attempt was retried

    failed = by_job[(declined.id, "error")]
    assert failed["message"] == (
        "job testing.sentry_jobs.ChargeDeclined failed: card declined for order 12"
    )
    assert failed["contexts"]["corequeue job"] == {
        "id": declined.id,
        "name": "testing.sentry_jobs.ChargeDeclined",
        "queue": "billing",
        "attempt": 2,
        "outcome": "errored",
        "error": "card declined for order 12",
    }
    assert failed["tags"] == {
        "corequeue.job_name": "testing.sentry_jobs.ChargeDeclined",
        "corequeue.queue": "billing",
        "corequeue.outcome": "errored",
    }
    assert failed["fingerprint"] == [
        "corequeue",
        "job_failed",
        "testing.sentry_jobs.ChargeDeclined",
    ]
    lost = by_job[(crashed.id, "warning")]
    assert lost["message"].startswith("job testing.sentry_jobs.Segfault lost an attempt: ")
    assert lost["contexts"]["corequeue job"]["outcome"] == "lost"
    assert lost["fingerprint"] == ["corequeue", "job_lost", "testing.sentry_jobs.Segfault"]
