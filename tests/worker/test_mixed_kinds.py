"""A worker that has run an async job, in a queue that mixes async and slow sync jobs (issue
19), with real worker processes on SQLite and PostgreSQL.

Its pool then offers hundreds of async slots beside its few sync ones. It must claim sync jobs
only for its sync room: sync jobs claimed into async room would wait in its children's queues
(``running`` in the database all that time) while a second worker beside it sits idle.
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from corequeue import enqueue_many
from corequeue.executor.sizing import INITIAL_PENDING
from corequeue.store import schema
from corequeue.store.queries import Store
from testing.async_jobs import AsyncSleep, ThreadSleep
from testing.e2e import WorkerFactory
from testing.faults import wait_for

IMPORTS = ("testing.async_jobs",)
#: 2 children, --threads 1: room for 2 x (threads - 1 + max_pending) sync jobs, max_pending
#: being INITIAL_PENDING until a sync job's duration is known, then less for slow jobs.
CHILDREN, THREADS = 2, 1
SYNC_ROOM = CHILDREN * (THREADS - 1 + INITIAL_PENDING)
SYNC_JOBS = 200
OPTIONS = ("--max-processes", str(CHILDREN), "--threads", str(THREADS), "--poll-interval", "0.2")


def held(store: Store) -> dict[str, int]:
    """Jobs claimed and not ended (``running``), by worker id."""
    jobs = schema.jobs
    query = (
        sa.select(jobs.c.worker_id, sa.func.count())
        .where(jobs.c.state == "running")
        .group_by(jobs.c.worker_id)
    )
    with store.engine.connect() as conn:
        return {worker: int(n) for worker, n in conn.execute(query)}


def ended(store: Store) -> int:
    jobs = schema.jobs
    with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.state == "succeeded")
        return int(conn.execute(query).scalar_one())


def test_a_worker_that_ran_an_async_job_claims_slow_sync_jobs_only_for_its_sync_room(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    (warm_up,) = enqueue_many([AsyncSleep(log, "async", 0.0)])
    one = workers(database_url, *OPTIONS, imports=IMPORTS)
    assert warm_up.wait(timeout=60) == "async", one.log()  # its pool offers async slots now

    enqueue_many(ThreadSleep(log, f"sync-{i}", 0.5) for i in range(SYNC_JOBS))
    first = wait_for(lambda: held(store), timeout=30, what="the first worker's claim")
    (one_id,) = first
    most = first[one_id]
    assert most <= SYNC_ROOM, f"{most} sync jobs held, for {SYNC_ROOM} sync slots"

    two = workers(database_url, *OPTIONS, imports=IMPORTS)
    seen_two = 0

    def shared() -> bool:
        nonlocal most, seen_two
        now = held(store)
        most = max(most, now.get(one_id, 0))
        assert most <= SYNC_ROOM, f"{most} sync jobs held, for {SYNC_ROOM} sync slots\n{now}"
        seen_two = max([seen_two, *(n for w, n in now.items() if w != one_id)])
        # The second worker took a share, and both have run a few jobs since.
        return seen_two > 0 and ended(store) >= 12

    started = time.monotonic()
    wait_for(shared, timeout=60, what="the second worker to take a share", detail=two.log)
    print(
        f"first worker held at most {most} sync jobs (sync room {SYNC_ROOM}); the second "
        f"held up to {seen_two}; {ended(store)} ended after {time.monotonic() - started:.1f}s"
    )
    assert 0 < seen_two <= SYNC_ROOM
