"""Fixtures for the dashboard tests: jobs put in every state through the store's own methods."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from corequeue.core import lifecycle
from corequeue.core.states import JobState, Outcome
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd, NewJob, WorkerRecord
from corequeue.web import create_app

XSS = "<script>alert(1)</script>"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "app/jobs.py", line 42, in run\n'
    "    charge(self.order_id)\n"
    "RuntimeError: payment gateway said <b>no</b>\n"
)


def new_job(
    name: str = "app.jobs.SendEmail",
    *,
    params: object = None,
    queue: str = "default",
    run_at: datetime,
    retries: int = 0,
    unique_key: str = "",
) -> NewJob:
    return NewJob(
        name=name,
        params=json.dumps(params if params is not None else {"args": [], "kwargs": {}}),
        queue=queue,
        priority=0,
        run_at=run_at,
        max_attempts=retries + 1,
        timeout=None,
        unique_key=unique_key,
        source="app/views.py:17",
    )


def run_job(
    store: Store,
    job: NewJob,
    outcomes: list[Outcome],
    *,
    latency: float = 0.25,
    duration: float = 0.5,
    worker_id: str = "0f6c4f9e-1111-4c1e-9d7e-5c2a7b1e0001",
) -> int:
    """Insert ``job`` at its run_at and run one attempt per outcome (retries at once)."""
    [inserted] = store.job_insert_many([job], now=job.run_at)
    at = job.run_at
    for outcome in outcomes:
        lease = uuid.uuid4().hex
        start = at + timedelta(seconds=latency)
        [claimed] = store.job_claim_many(
            queues=[job.queue], limit=1, lease=lease, worker_id=worker_id, now=start
        )
        assert claimed.id == inserted.id
        end = start + timedelta(seconds=duration)
        change = lifecycle.finish(claimed.snapshot(), outcome, lease=lease, now=end)
        failed = outcome is not Outcome.SUCCEEDED
        store.job_finish_many(
            [
                AttemptEnd(
                    job_id=claimed.id,
                    lease=lease,
                    attempt=claimed.attempts,
                    outcome=outcome,
                    change=change,
                    worker_id=worker_id,
                    started_at=start,
                    finished_at=end,
                    result=None if failed else json.dumps({"sent": True}),
                    error_type="RuntimeError" if failed else None,
                    error_message="payment gateway said <b>no</b>" if failed else None,
                    traceback=TRACEBACK if failed else None,
                )
            ]
        )
        at = end
    return inserted.id


@dataclass
class Seeded:
    """Ids of the jobs :func:`seed` made, by what they are."""

    succeeded: list[int]
    failed: int
    xss: int
    waiting: int
    delayed: int
    running: int
    worker_id: str
    now: datetime


def seed(store: Store, now: datetime | None = None) -> Seeded:
    """A small history: successes over the last minutes, a job that failed twice, a job whose
    parameters hold a script tag, a waiting job, a delayed job, a running one and a worker."""
    now = now or datetime.now(UTC)
    worker_id = "0f6c4f9e-1111-4c1e-9d7e-5c2a7b1e0001"
    succeeded = [
        run_job(
            store,
            new_job(
                "app.jobs.SendEmail",
                params={"args": [i], "kwargs": {}},
                run_at=now - timedelta(minutes=12 - i),
            ),
            [Outcome.SUCCEEDED],
        )
        for i in range(6)
    ]
    failed = run_job(
        store,
        new_job(
            "app.jobs.ChargeCard",
            queue="billing",
            run_at=now - timedelta(minutes=4),
            retries=1,
            params={"args": [], "kwargs": {"order_id": 99}},
        ),
        [Outcome.ERRORED, Outcome.ERRORED],
    )
    xss = run_job(
        store,
        new_job(
            "app.jobs.Render",
            params={"args": [XSS], "kwargs": {"title": XSS}},
            run_at=now - timedelta(minutes=3),
        ),
        [Outcome.SUCCEEDED],
    )
    [running] = store.job_insert_many(
        [new_job("app.jobs.Export", queue="reports", run_at=now - timedelta(minutes=1))],
        now=now - timedelta(minutes=1),
    )
    store.job_claim_many(
        queues=["reports"],
        limit=1,
        lease=uuid.uuid4().hex,
        worker_id=worker_id,
        now=now - timedelta(seconds=50),
    )
    store.worker_beat(
        WorkerRecord(
            id=worker_id,
            host="web-1",
            pid=4242,
            queues=[],
            started_at=now - timedelta(hours=1),
            last_beat_at=now - timedelta(seconds=2),
            stats={"done": 9},
        )
    )
    waiting, delayed = store.job_insert_many(
        [
            new_job(
                "app.jobs.SendEmail",
                params={"args": [100], "kwargs": {}},
                run_at=now - timedelta(seconds=30),
                unique_key="welcome:100",
            ),
            new_job(
                "app.jobs.Reminder",
                params={"args": [], "kwargs": {}},
                run_at=now + timedelta(hours=2),
            ),
        ],
        now=now - timedelta(seconds=30),
    )
    assert store.job_get(running.id).state is JobState.RUNNING  # type: ignore[union-attr]
    return Seeded(succeeded, failed, xss, waiting.id, delayed.id, running.id, worker_id, now)


@pytest.fixture
def seeded(store: Store) -> Seeded:
    return seed(store)


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    """A client of a dashboard without a token (as on localhost)."""
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        yield c


def csrf_of(client: TestClient, path: str = "/jobs") -> str:
    """The CSRF token a page of the dashboard hands out to this client's session."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    marker = '<meta name="csrf-token" content="'
    start = response.text.index(marker) + len(marker)
    return response.text[start : response.text.index('"', start)]


def seed_history(store: Store, now: datetime | None = None, *, minutes: int = 60) -> int:
    """A busier past hour for the overview: a few jobs finished every minute in three queues,
    with some failures, in batches. Returns how many jobs it made."""
    now = now or datetime.now(UTC)
    queues = ("default", "mail", "billing")
    made = 0
    for m in range(minutes, 0, -1):
        at = now.replace(second=0, microsecond=0) - timedelta(minutes=m - 1, seconds=-1)
        if at > now:
            continue
        ok = 3 + (m * 7) % 9 + (4 if 20 < m < 35 else 0)
        bad = 2 if m % 11 == 3 else (1 if m % 5 == 0 else 0)
        batch = [
            new_job(
                f"app.jobs.{('SendEmail', 'ResizeImage', 'SyncInvoice')[i % 3]}",
                queue=queues[i % 3],
                run_at=at,
                params={"args": [m, i], "kwargs": {}},
            )
            for i in range(ok + bad)
        ]
        store.job_insert_many(batch, now=at)
        lease = uuid.uuid4().hex
        start = at + timedelta(milliseconds=40 + (m * 37) % 300)
        claimed = store.job_claim_many(
            queues=[], limit=len(batch), lease=lease, worker_id="history", now=start
        )
        ends = []
        for n, job in enumerate(claimed):
            outcome = Outcome.ERRORED if n >= ok else Outcome.SUCCEEDED
            end = start + timedelta(milliseconds=80 + (n * 131 + m * 53) % 2400)
            change = lifecycle.finish(job.snapshot(), outcome, lease=lease, now=end)
            failed = outcome is Outcome.ERRORED
            ends.append(
                AttemptEnd(
                    job_id=job.id,
                    lease=lease,
                    attempt=job.attempts,
                    outcome=outcome,
                    change=change,
                    worker_id="history",
                    started_at=start,
                    finished_at=end,
                    result=None if failed else "null",
                    error_type="TimeoutError" if failed else None,
                    error_message="upstream did not answer in 30s" if failed else None,
                    traceback=TRACEBACK if failed else None,
                )
            )
        store.job_finish_many(ends)
        made += len(batch)
    return made
