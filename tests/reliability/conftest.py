"""Fixtures for the fault-injection tests: a migrated, empty PostgreSQL database (the shared
server, in this session's throwaway database), real workers started and always cleaned up,
and helpers that read what happened to the jobs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

import corequeue
from corequeue import runtime
from corequeue.store import schema
from corequeue.store.queries import Store
from corequeue.store.records import AttemptRecord
from testing.faults import WorkerProcess
from tests.conftest import empty_postgres

#: Fast heartbeats for tests: a SIGKILLed worker's jobs are rescued about 3 s after its last beat.
FAST = (
    "--heartbeat-interval",
    "0.5",
    "--heartbeat-timeout",
    "3",
    "--poll-interval",
    "0.2",
)


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated, with empty tables."""
    return empty_postgres(postgres_url)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    configured = corequeue.configure(pg_url, middleware=[])
    try:
        yield configured
    finally:
        runtime.reset()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'corequeue.sqlite3'}"
    Store.from_url(url).migrate()
    configured = corequeue.configure(url, middleware=[])
    try:
        yield configured
    finally:
        runtime.reset()


class Spawner:
    """Starts workers (``spawn(url, *args)``); every one is killed, with its process group,
    when the test ends."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def __call__(
        self,
        url: str,
        *args: str,
        fast: bool = True,
        env: Mapping[str, str] | None = None,
        imports: Sequence[str] = ("testing.reliability_jobs",),
    ) -> WorkerProcess:
        worker = WorkerProcess(
            url,
            *(FAST if fast else ()),
            *args,
            log_path=self.tmp_path / f"worker-{len(self.started) + 1}.log",
            env=env,
            imports=imports,
        )
        self.started.append(worker)
        return worker.start()

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()[-3000:]}" for w in self.started)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path)
    try:
        yield spawner
    finally:
        for worker in spawner.started:
            worker.cleanup()


def attempts_by_job(store: Store) -> dict[int, list[AttemptRecord]]:
    """Every job's attempts, in order (``Store.attempt_list``: the attempt rows, and a success
    kept on its job row); jobs never attempted are left out."""
    with store.engine.connect() as conn:
        ids = list(conn.execute(sa.select(schema.jobs.c.id).order_by(schema.jobs.c.id)).scalars())
    return {i: found for i in ids if (found := store.attempt_list(i))}


def state_counts(store: Store) -> Counter[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.jobs.c.state, sa.func.count()).group_by(schema.jobs.c.state)
        ).all()
    return Counter({state: n for state, n in rows})


def worker_id_of(store: Store, pid: int, *, timeout: float = 30.0) -> str:
    """The id of the worker process ``pid`` (from its heartbeat row)."""
    from testing.faults import wait_for

    def find() -> str | None:
        return next((w.id for w in store.worker_list() if w.pid == pid), None)

    return str(wait_for(find, timeout=timeout, what=f"the heartbeat row of worker pid {pid}"))
