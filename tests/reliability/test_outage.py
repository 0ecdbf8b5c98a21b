"""Database outages during a run, injected with a TCP proxy in front of the shared server (all
connections cut, new ones refused): the worker stays up, logs the outage once per interval,
resumes by itself and records every result (those finished while the database was away are
written when it is back). Also: a worker stopped while the database is gone does not hang.

``COREQUEUE_TEST_RESTART_POSTGRES=1`` also restarts the real server (it disturbs every other
test using it, so it is opt-in, and marked ``serial``: nox runs it alone, after the parallel
tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corequeue import enqueue_many
from corequeue.store.queries import Store
from testing.faults import TcpProxy, postgres_start, postgres_stop, wait_for
from testing.reliability_jobs import Gated, Touch, run_counts, runs
from tests.reliability.conftest import Spawner, attempts_by_job, state_counts

JOBS = 80
OUTAGE_LINE = "retrying (results are kept until it is back)"


@pytest.fixture
def proxy(pg_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy.for_url(pg_url).start()
    try:
        yield proxy
    finally:
        proxy.close()


def _run_through_outage(
    store: Store, spawn: Spawner, log: str, url: str, cut: object, restore: object
) -> None:
    # Every job waits for the gate: the children's first jobs hold on until the database is
    # gone, so the children hold queued jobs at the cut whatever the timing.
    gate = f"{log}.gate"
    handles = enqueue_many([Gated(log, i, gate) for i in range(JOBS)])
    worker = spawn(url, "--max-processes", "2")
    wait_for(lambda: len(runs(log)) >= 2, timeout=60, what="both children to start a job")
    wait_for(
        lambda: state_counts(store)["running"] >= 4,
        timeout=60,
        what="jobs queued in the children behind the running ones",
        detail=worker.log,
    )

    cut()  # type: ignore[operator]
    down_at = time.monotonic()
    at_cut = len(runs(log))
    worker.wait_log(OUTAGE_LINE, timeout=30)
    Path(gate).touch()
    # Children keep running what they hold; their results wait in the worker. Hold the outage
    # past the heartbeat timeout (3 s) so the worker must also survive a stale heartbeat.
    wait_for(lambda: len(runs(log)) >= at_cut + 2, timeout=30, what="jobs run during the outage")
    wait_for(lambda: time.monotonic() - down_at > 4, timeout=10, what="the outage to last 4s")
    restore()  # type: ignore[operator]

    worker.wait_log("database reachable again", timeout=60)
    wait_for(
        lambda: state_counts(store)["succeeded"] == JOBS,
        timeout=120,
        what=f"all {JOBS} jobs to succeed after the outage",
        detail=lambda: f"{state_counts(store)}\n{spawn.logs()}",
    )
    assert worker.returncode is None
    # Nothing lost and nothing run twice: each job ran once and has one succeeded attempt.
    assert run_counts(log) == {i: 1 for i in range(JOBS)}
    attempts = attempts_by_job(store)
    assert all([a.outcome for a in attempts[h.id]] == ["succeeded"] for h in handles)
    text = worker.log()
    # Logged once per interval (10 s), not once per retry.
    assert text.count(OUTAGE_LINE) == 1, text
    assert text.count("database reachable again") == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.log()


def test_an_outage_during_a_run_loses_nothing(
    pg_store: Store, spawn: Spawner, proxy: TcpProxy, tmp_path: Path
) -> None:
    url = proxy.url(pg_store.url.render_as_string(hide_password=False))
    _run_through_outage(
        pg_store, spawn, str(tmp_path / "runs.jsonl"), url, proxy.cut, proxy.restore
    )


@pytest.mark.serial  # nox's tests session leaves it to the serial one, run alone after it
@pytest.mark.skipif(
    not os.environ.get("COREQUEUE_TEST_RESTART_POSTGRES"),
    reason="restarts the shared PostgreSQL server: set COREQUEUE_TEST_RESTART_POSTGRES=1",
)
def test_a_postgresql_restart_during_a_run_loses_nothing(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    url = pg_store.url.render_as_string(hide_password=False)
    try:
        _run_through_outage(
            pg_store, spawn, str(tmp_path / "runs.jsonl"), url, postgres_stop, postgres_start
        )
    finally:
        postgres_start_if_down()


def postgres_start_if_down() -> None:
    with contextlib.suppress(Exception):  # already running
        postgres_start()


def test_a_worker_stopped_while_the_database_is_gone_exits(
    pg_store: Store, spawn: Spawner, proxy: TcpProxy, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    url = pg_store.url.render_as_string(hide_password=False)
    # What a worker cannot record before it exits is rescued as ``lost`` like a SIGKILLed
    # worker's jobs, which uses an attempt: these jobs have attempts to spare.
    handles = enqueue_many([Touch(log, i, 1.0) for i in range(6)], retries=2)
    worker = spawn(proxy.url(url), "--max-processes", "2", "--grace-period", "3")
    wait_for(lambda: len(runs(log)) >= 2, timeout=60, what="two jobs to start")
    proxy.cut()
    worker.signal(signal.SIGTERM)

    assert worker.wait_exit(30) == 0, worker.log()  # within the grace period and a bit
    assert "could not record" in worker.log()
    assert worker.log().count(OUTAGE_LINE) == 1
    # What it could not record is rescued by the next worker once the heartbeat expires.
    proxy.restore()
    spawn(url, "--max-processes", "2")
    for handle in handles:
        assert handle.wait(timeout=60) == handles.index(handle)
