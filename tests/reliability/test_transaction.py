"""The double-charge scenario of issue 21 under real workers, on SQLite and PostgreSQL: a job
writes a row and enqueues ``ChargeCard`` inside ``current_job().transaction()``, then its first
run fails (raises, times out, is cancelled, or its worker or child is SIGKILLed while the
transaction holds the writes); whatever ran, exactly the successful run's row and ChargeCard
exist. (Attempt by attempt in-process, with the lease-lost cases: tests/store/test_transaction.py.)
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corequeue.core.states import JobState, Outcome
from corequeue.jobs import JobHandle
from corequeue.store.queries import Store
from testing import tx_jobs
from testing.faults import WorkerProcess, wait_for
from tests.reliability.conftest import Spawner

JOBS = ("testing.tx_jobs",)


def _url(store: Store) -> str:
    return store.url.render_as_string(hide_password=False)


@pytest.fixture(params=["postgresql", "sqlite"])
def shop(request: pytest.FixtureRequest) -> Store:
    """The reliability fixtures' PostgreSQL or SQLite store, configured process-wide, with the
    jobs' own table (empty)."""
    name = "pg_store" if request.param == "postgresql" else "sqlite_store"
    store: Store = request.getfixturevalue(name)
    tx_jobs.create_tables(_url(store))
    return store


def charged_once(store: Store, handle: JobHandle) -> None:
    """The order succeeded, with exactly one row and one ChargeCard (run too)."""
    assert handle.refresh().state is JobState.SUCCEEDED
    assert tx_jobs.effect_rows(_url(store)) == [(1, "charged")]
    jobs = Counter((j.name.rpartition(".")[2], j.state.value) for j in store.job_list())
    assert jobs == {(type_name(handle), "succeeded"): 1, ("ChargeCard", "succeeded"): 1}


def type_name(handle: JobHandle) -> str:
    assert handle.record is not None
    return handle.record.name.rpartition(".")[2]


def burst(store: Store, spawn: Spawner, *args: str) -> str:
    """Run a burst worker to the end; returns its log."""
    worker = spawn(_url(store), "--burst", *args, imports=JOBS)
    assert worker.wait_exit(timeout=120) == 0, spawn.logs()
    return worker.log()


@pytest.mark.parametrize(
    ("job", "args"),
    [
        (tx_jobs.ProcessOrder, ()),
        (tx_jobs.ProcessOrder, ("--threads", "2")),
        (tx_jobs.ProcessOrderAsync, ()),
    ],
    ids=["sync", "threads", "async"],
)
def test_a_job_that_fails_after_its_writes_charges_once(
    shop: Store, spawn: Spawner, tmp_path: Path, job: type, args: tuple[str, ...]
) -> None:
    handle = job(1, "raise", str(tmp_path)).run_in_worker(retries=1)
    log = burst(shop, spawn, *args)
    charged_once(shop, handle)
    outcomes = [a.outcome for a in shop.attempt_list(handle.id)]
    assert outcomes == [Outcome.ERRORED, Outcome.SUCCEEDED]
    # The success recorded by the job's transaction is logged and counted once, and the
    # worker tried no second ending for it.
    assert log.count(f"finished job_id={handle.id} ") == 2
    assert "outcome=succeeded" in log.split(f"finished job_id={handle.id} ")[2]
    assert '"succeeded": 2, "failed": 1, "retried": 1,' in log  # the counters at exit
    assert '"refused": 0' in log


@pytest.mark.parametrize("job", [tx_jobs.ProcessOrder, tx_jobs.ProcessOrderAsync])
def test_a_job_that_times_out_after_its_writes_charges_once(
    shop: Store, spawn: Spawner, tmp_path: Path, job: type
) -> None:
    """Sync: the worker kills the child at the timeout (the database rolls back what its
    connection held). Async: the child cancels the job, which rolls its transaction back."""
    handle = job(1, "hang", str(tmp_path)).run_in_worker(retries=1, timeout=2)
    burst(shop, spawn)
    charged_once(shop, handle)
    outcomes = [a.outcome for a in shop.attempt_list(handle.id)]
    assert outcomes == [Outcome.TIMED_OUT, Outcome.SUCCEEDED]


def _in_transaction(tmp_path: Path, spawn: Spawner) -> int:
    """Wait until the first run holds its writes; returns the pid of the process running it."""
    mark = tmp_path / "order-1"
    wait_for(mark.exists, timeout=60, what=f"the first run's writes\n{spawn.logs()}")
    return int(wait_for(lambda: mark.read_text().strip(), timeout=10, what="its pid"))


@pytest.mark.parametrize("job", [tx_jobs.ProcessOrder, tx_jobs.ProcessOrderAsync])
def test_a_job_cancelled_while_its_transaction_is_open_leaves_nothing(
    pg_store: Store, spawn: Spawner, tmp_path: Path, job: type
) -> None:
    """PostgreSQL only: on SQLite the open transaction holds the database's write lock, so the
    cancel itself waits for the job to end (see docs/how-to/exactly-once.md)."""
    tx_jobs.create_tables(_url(pg_store))
    handle = job(1, "hang", str(tmp_path)).run_in_worker()
    worker = spawn(_url(pg_store), imports=JOBS)
    _in_transaction(tmp_path, spawn)
    pg_store.job_cancel(handle.id, now=datetime.now(UTC))
    worker.wait_log(f"cancelled job_id={handle.id}", timeout=60)
    assert handle.refresh().state is JobState.CANCELLED
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(60) == 0
    assert tx_jobs.effect_rows(_url(pg_store)) == []
    assert [j.name.rpartition(".")[2] for j in pg_store.job_list()] == [job.__name__]


def _stop_when_all_succeeded(store: Store, spawn: Spawner, worker: WorkerProcess) -> None:
    """Wait until the job's second run and the ChargeCard it enqueued have succeeded, then
    stop ``worker`` (SIGTERM: it must exit cleanly)."""
    wait_for(
        lambda: {j.state for j in store.job_list()} == {JobState.SUCCEEDED},
        timeout=60,
        what=f"the job's second run and its ChargeCard\n{spawn.logs()}",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(60) == 0


def test_a_worker_killed_while_its_job_holds_writes_charges_once(
    shop: Store, spawn: Spawner, tmp_path: Path
) -> None:
    """SIGKILL of the worker (its child dies with it): the rescue runs the job again on
    another worker, without using an attempt; the dead run's writes are gone."""
    handle = tx_jobs.ProcessOrder(1, "hang", str(tmp_path)).run_in_worker()
    first = spawn(_url(shop), imports=JOBS)
    _in_transaction(tmp_path, spawn)
    first.kill()
    # Not a burst worker: it would find nothing ready and exit before the dead worker's last
    # beat is old enough for its job to be rescued.
    _stop_when_all_succeeded(shop, spawn, spawn(_url(shop), imports=JOBS))
    charged_once(shop, handle)
    assert [a.outcome for a in shop.attempt_list(handle.id)] == [Outcome.LOST, Outcome.SUCCEEDED]


def test_a_child_killed_while_its_job_holds_writes_charges_once(
    shop: Store, spawn: Spawner, tmp_path: Path
) -> None:
    handle = tx_jobs.ProcessOrder(1, "hang", str(tmp_path)).run_in_worker(retries=1)
    worker = spawn(_url(shop), imports=JOBS)
    os.kill(_in_transaction(tmp_path, spawn), signal.SIGKILL)
    _stop_when_all_succeeded(shop, spawn, worker)
    charged_once(shop, handle)
    assert [a.outcome for a in shop.attempt_list(handle.id)] == [Outcome.LOST, Outcome.SUCCEEDED]
