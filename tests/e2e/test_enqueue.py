"""Enqueueing through the public API: unique keys under concurrency, the caller's
transaction, refused parameters and the recorded source."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy.orm import Session

import corequeue
from corequeue import JobParamsError, JobState
from corequeue.store.queries import Store
from testing.e2e import ROOT, WorkerFactory, clean_env
from testing.jobs import Add, Echo, Record


def test_a_unique_key_yields_one_job_under_concurrent_enqueues_from_threads(
    store: Store,
) -> None:
    def enqueue(_: int) -> int:
        return Add(1, 2).run_in_worker(unique_key="report:7").id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(enqueue, range(32)))

    assert len(set(ids)) == 1
    assert len(store.job_list()) == 1


ENQUEUE_AT = """
import sys, time
import corequeue
from testing.jobs import Add
corequeue.configure(sys.argv[1])
start = float(sys.argv[2])
time.sleep(max(start - time.time(), 0))
ids = {Add(1, 2).run_in_worker(unique_key="report:7").id for _ in range(10)}
print(*ids)
"""


def test_a_unique_key_yields_one_job_under_concurrent_enqueues_from_processes(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    # Four processes start enqueueing the same key at the same moment (a shared start time
    # far enough ahead for all of them to have imported corequeue).
    start = time.time() + 3
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ENQUEUE_AT, database_url, str(start)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.split())

    (job,) = store.job_list()
    assert outputs == [[str(job.id)]] * 4


def test_a_unique_key_is_free_again_once_its_job_finished(
    store: Store, database_url: str, workers: WorkerFactory
) -> None:
    first = Add(1, 1).run_in_worker(unique_key="k")
    assert Add(1, 1).run_in_worker(unique_key="k").id == first.id
    assert workers(database_url, "--burst").wait_exit() == 0
    assert first.wait(timeout=5) == 2

    second = Add(1, 1).run_in_worker(unique_key="k")

    assert second.id != first.id


def test_a_rolled_back_connection_enqueue_leaves_nothing(store: Store) -> None:
    with store.engine.connect() as conn, conn.begin() as transaction:
        handle = Add(1, 2).run_in_worker(connection=conn)
        assert handle.id is not None
        transaction.rollback()

    with Session(store.engine) as session:
        Add(3, 4).run_in_worker(connection=session)
        corequeue.enqueue_many([Add(5, 6)], connection=session)
        session.rollback()

    assert store.job_list() == []


def test_a_committed_connection_enqueue_runs(
    store: Store, database_url: str, workers: WorkerFactory
) -> None:
    with store.engine.connect() as conn, conn.begin():
        in_connection = Add(1, 2).run_in_worker(connection=conn)
    with Session(store.engine) as session:
        in_session = Add(3, 4).run_in_worker(connection=session)
        session.commit()

    assert workers(database_url, "--burst").wait_exit() == 0

    assert in_connection.wait(timeout=5) == 3
    assert in_session.wait(timeout=5) == 7


def test_an_unencodable_parameter_fails_at_enqueue_naming_it_and_inserts_nothing(
    store: Store,
) -> None:
    with pytest.raises(JobParamsError) as refused:
        Record("runs.jsonl", key=object()).run_in_worker()
    message = str(refused.value)
    assert message.startswith("parameter 'key' is a builtins.object, which corequeue cannot store")

    with pytest.raises(JobParamsError, match=r"parameter 'key'\['when'\] is a builtins.set"):
        corequeue.enqueue_many([Record("runs.jsonl", 1), Record("runs.jsonl", {"when": {1, 2}})])

    assert store.job_list() == []


def test_values_json_cannot_carry_but_corequeue_can_round_trip_through_a_worker(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal

    key = {
        "when": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "day": date(2030, 1, 2),
        "id": uuid4(),
        "amount": Decimal("1.10"),
        "pair": (1, 2),
    }
    handle = Echo(key).run_in_worker()

    assert workers(database_url, "--burst").wait_exit() == 0

    assert handle.wait(timeout=5) == key


def test_the_source_of_each_job_is_the_enqueue_call(store: Store) -> None:
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    handle = Add(1, 2).run_in_worker()
    (bulk,) = corequeue.enqueue_many([Add(1, 2)])
    bulk_line = line + 1

    single_job, bulk_job = store.job_get(handle.id), store.job_get(bulk.id)
    assert single_job is not None and bulk_job is not None
    assert single_job.source == f"{__file__}:{line}"
    assert bulk_job.source == f"{__file__}:{bulk_line}"


def test_enqueue_options_and_class_defaults_are_stored(store: Store) -> None:
    handle = Add(1, 2).run_in_worker(
        queue="maths", priority=5, retries=3, timeout=30, unique_key="u", delay=60
    )
    plain = Add(1, 2).run_in_worker()

    job, default = handle.refresh().record, plain.refresh().record
    assert job is not None and default is not None
    assert (job.queue, job.priority, job.max_attempts, job.timeout, job.unique_key) == (
        "maths",
        5,
        4,
        30.0,
        "u",
    )
    assert (job.run_at - job.created_at).total_seconds() == pytest.approx(60, abs=1)
    assert job.state is JobState.REQUESTED
    assert (default.queue, default.priority, default.max_attempts, default.timeout) == (
        "default",
        0,
        1,
        None,
    )
