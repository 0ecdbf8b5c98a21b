"""Builders shared by the store tests (and importable by spawned processes)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from corequeue.core import claims, lifecycle
from corequeue.core.states import Outcome
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd, ClaimedJob, NewJob

#: The tests' clock: every ``now`` is an offset from here, never the real time.
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EMPTY_PARAMS = '{"args":[],"kwargs":{}}'


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_job(
    name: str = "tests.Job",
    *,
    queue: str = "default",
    priority: int = 0,
    run_at: datetime = T0,
    retries: int = 0,
    unique_key: str = "",
    params: str = EMPTY_PARAMS,
    timeout: float | None = None,
    source: str = "testing/store_support.py:1",
) -> NewJob:
    return NewJob(
        name=name,
        params=params,
        queue=queue,
        priority=priority,
        run_at=run_at,
        max_attempts=retries + 1,
        timeout=timeout,
        unique_key=unique_key,
        source=source,
    )


def insert(store: Store, *jobs: NewJob, now: datetime = T0) -> list[int]:
    return [i.id for i in store.job_insert_many(list(jobs), now=now)]


def claim(
    store: Store,
    *,
    now: datetime = T0,
    limit: int = 100,
    queues: Sequence[str] = (),
    worker: str = "worker-1",
    lease: str | None = None,
    chain_depth: int = 0,
    names: claims.Names | None = None,
) -> list[ClaimedJob]:
    return store.job_claim_many(
        queues=queues,
        limit=limit,
        lease=lease or uuid.uuid4().hex,
        worker_id=worker,
        now=now,
        chain_depth=chain_depth,
        names=names,
    )


def ending(
    job: ClaimedJob,
    outcome: Outcome,
    *,
    now: datetime,
    retry_delay: float = 0.0,
    worker: str = "worker-1",
    **fields: Any,
) -> AttemptEnd:
    """The ending a worker would persist for ``job``, decided by the core from what it holds."""
    change = lifecycle.finish(
        job.snapshot(), outcome, lease=job.lease, now=now, retry_delay=retry_delay
    )
    return AttemptEnd(
        job_id=job.id,
        lease=job.lease,
        attempt=job.attempts,
        outcome=outcome,
        change=change,
        worker_id=worker,
        started_at=fields.pop("started_at", job.started_at),
        finished_at=now,
        **fields,
    )


@contextlib.contextmanager
def seeded_store(url: str, *, finished: int, waiting: int) -> Iterator[Store]:
    """A migrated store of ``url`` holding the jobs of :func:`seed_jobs`, emptied and
    disposed of afterwards."""
    store = Store.from_url(url)
    store.migrate()
    seed_jobs(store, finished=finished, waiting=waiting)
    try:
        yield store
    finally:
        with store.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE corequeue_jobs, corequeue_attempts RESTART IDENTITY"))
        store.dispose()


def seed_jobs(store: Store, *, finished: int, waiting: int) -> None:
    """Empty the jobs' tables (and the queues' limits and pauses), then add ``finished``
    succeeded jobs and ``waiting`` ones (every third in the queue "mail", the others in
    "default"; priority ``i % 5``; due ``i % 600`` seconds after T0, so half are ready at
    T0 + 5 min), and ANALYZE (PostgreSQL)."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE corequeue_jobs, corequeue_attempts RESTART IDENTITY"))
        # No limit or pause left by a test before (claims here are the plain claim).
        conn.execute(sa.text("TRUNCATE corequeue_queues, corequeue_limit_slots"))
        conn.execute(
            sa.text(
                """
                INSERT INTO corequeue_jobs (name, queue, priority, state, params, run_at,
                    created_at, finished_at, attempts, max_attempts, unique_key, source, result)
                SELECT 'tests.Done', CASE WHEN i % 3 = 0 THEN 'mail' ELSE 'default' END,
                    i % 5, 'succeeded', '{"args":[],"kwargs":{}}', :t0, :t0, :t0, 1, 1, '', '',
                    'null'
                FROM generate_series(1, :n) AS i
                """
            ),
            {"t0": T0, "n": finished},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO corequeue_jobs (name, queue, priority, state, params, run_at,
                    created_at, attempts, max_attempts, unique_key, source)
                SELECT 'tests.Waiting', CASE WHEN i % 3 = 0 THEN 'mail' ELSE 'default' END,
                    i % 5, 'requested', '{"args":[],"kwargs":{}}',
                    :t0 + (i % 600) * interval '1 second', :t0, 0, 1, '', ''
                FROM generate_series(1, :waiting) AS i
                """
            ),
            {"t0": T0, "waiting": waiting},
        )
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE corequeue_jobs"))


def enqueue_unique_in_process(url: str, key: str, barrier: Any, results: Any) -> None:
    """Run in a spawned process: wait for the others, then enqueue one job under ``key``."""
    store = Store.from_url(url)
    try:
        barrier.wait(timeout=60)
        (inserted,) = store.job_insert_many([new_job(unique_key=key)], now=T0)
        results.put((inserted.id, inserted.inserted))
    except BaseException as exc:
        results.put(("error", repr(exc)))
        raise
    finally:
        store.dispose()
