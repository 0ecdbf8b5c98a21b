"""``corequeue.current_job().transaction()``, attempt by attempt in this process, on SQLite and
PostgreSQL: the job's writes commit together with its success (recorded on its own
connection, a compare-and-set on its lease) or not at all. The same attempts under real
workers, with timeouts, cancels and kills: tests/reliability/test_transaction.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import corequeue
from corequeue import runtime
from corequeue.core.states import JobState, Outcome
from corequeue.executor.task import Task, TaskResult, run_task
from corequeue.middleware import build_chain
from corequeue.store.queries import Store
from corequeue.testing.inline import InlineJobs
from corequeue.worker.endings import decide
from testing import tx_jobs
from tests.conftest import empty_postgres


@pytest.fixture
def shop(store: Store, database_url: str) -> str:
    """The configured store's database, with the jobs' own table in it (empty)."""
    tx_jobs.create_tables(database_url)
    return database_url


def attempt(store: Store, lease: str) -> TaskResult:
    """Claim the next job and run one attempt as a worker's child does; then record its
    ending as the worker does, unless the job's transaction recorded it already."""
    now = datetime.now(UTC)
    (job,) = store.job_claim_many(queues=["default"], limit=1, lease=lease, worker_id="w", now=now)
    result = run_task(Task.of(job, "w"), build_chain([]), codecs=runtime.codecs())
    if not result.recorded:
        store.job_finish_many([decide(job, result, datetime.now(UTC), "w", interrupted=False)])
    return result


def jobs_by_name(store: Store) -> Counter[str]:
    return Counter(j.name.rpartition(".")[2] for j in store.job_list())


def test_the_writes_and_the_success_commit_together(store: Store, shop: str, tmp_path: Path):
    (tmp_path / "order-1").write_text("not its first run")
    handle = tx_jobs.ProcessOrder(1, "raise", str(tmp_path)).run_in_worker()
    result = attempt(store, "lease-1")
    assert (result.outcome, result.recorded) == (Outcome.SUCCEEDED, True)
    # Recorded by the job's own transaction: the worker wrote nothing for it.
    assert handle.refresh().state is JobState.SUCCEEDED
    assert handle.result == "done"
    assert tx_jobs.effect_rows(shop) == [(1, "charged")]
    assert jobs_by_name(store) == {"ProcessOrder": 1, "ChargeCard": 1}


@pytest.mark.parametrize("job", [tx_jobs.ProcessOrder, tx_jobs.ProcessOrderAsync])
def test_a_retried_job_charges_once(store: Store, shop: str, tmp_path: Path, job: type) -> None:
    """The double-charge scenario: the first attempt writes, enqueues ChargeCard, then fails;
    the second succeeds. One row, one ChargeCard."""
    handle = job(1, "raise", str(tmp_path)).run_in_worker(retries=1)
    first = attempt(store, "lease-1")
    assert (first.outcome, first.recorded) == (Outcome.ERRORED, False)
    assert tx_jobs.effect_rows(shop) == []
    assert jobs_by_name(store) == {job.__name__: 1}
    second = attempt(store, "lease-2")
    assert (second.outcome, second.recorded) == (Outcome.SUCCEEDED, True)
    assert handle.refresh().state is JobState.SUCCEEDED
    assert tx_jobs.effect_rows(shop) == [(1, "charged")]
    assert jobs_by_name(store) == {job.__name__: 1, "ChargeCard": 1}


def test_an_exception_leaving_the_block_rolls_it_back(store: Store, shop: str) -> None:
    tx_jobs.CatchesInside(3).run_in_worker()
    assert attempt(store, "lease-1").recorded
    assert tx_jobs.effect_rows(shop) == [(3, "kept")]


def test_an_attempt_rescued_as_lost_cannot_commit(store: Store, shop: str) -> None:
    """Rescued while it runs, before it enters its transaction: its writes are refused at the
    end (the compare-and-set finds the lease gone), its success is not recorded, and the job
    waits for its next run as the rescue left it."""
    handle = tx_jobs.LosesItsLease(4, "before").run_in_worker()
    result = attempt(store, "lease-1")
    assert (result.outcome, result.recorded) == (Outcome.ERRORED, False)
    assert result.error_type == "TransactionRolledBack"
    assert "no longer ran under this attempt's lease" in (result.error_message or "")
    assert tx_jobs.effect_rows(shop) == []
    assert jobs_by_name(store) == {"LosesItsLease": 1}
    record = handle.refresh().record
    assert record is not None
    assert (record.state, record.result) == (JobState.REQUESTED, None)
    outcomes = [a.outcome for a in store.attempt_list(handle.id)]
    assert outcomes == [Outcome.LOST]  # the rescue's; the late "errored" was refused


@pytest.fixture
def pg_shop(postgres_url: str) -> Iterator[Store]:
    url = empty_postgres(postgres_url)
    tx_jobs.create_tables(url)
    configured = corequeue.configure(url, middleware=[])
    try:
        yield configured
    finally:
        runtime.reset()


def test_an_attempt_rescued_after_its_writes_cannot_commit(pg_shop: Store) -> None:
    """PostgreSQL only: there a rescue may happen while the transaction holds its writes (on
    SQLite the rescuer waits for the transaction's write lock, so it cannot come between)."""
    handle = tx_jobs.LosesItsLease(5, "after").run_in_worker()
    result = attempt(pg_shop, "lease-1")
    assert (result.outcome, result.recorded) == (Outcome.ERRORED, False)
    assert tx_jobs.effect_rows(pg_shop.url.render_as_string(hide_password=False)) == []
    assert jobs_by_name(pg_shop) == {"LosesItsLease": 1}
    assert handle.refresh().state is JobState.REQUESTED


def test_outside_a_running_attempt_there_is_no_transaction() -> None:
    assert corequeue.current_job() is None
    context = Task(1, "lease", "x", "[]", 1, None).context()
    with pytest.raises(RuntimeError, match="inside the job's run"):
        context.transaction()


@pytest.mark.parametrize("job", [tx_jobs.ProcessOrder, tx_jobs.ProcessOrderAsync])
def test_inline_the_writes_commit_only_with_the_success(
    store: Store, shop: str, tmp_path: Path, job: type
) -> None:
    """run_jobs_inline (InlineJobs): the first attempt's writes roll back, the retry's commit
    (against the configured store: there is no job row inline), and ChargeCard, enqueued with
    connection=conn, runs once: after the successful attempt's commit."""
    with InlineJobs() as inline:
        handle = job(1, "raise", str(tmp_path)).run_in_worker(retries=1)
    assert handle.state is JobState.SUCCEEDED
    assert handle.outcomes == [Outcome.ERRORED, Outcome.SUCCEEDED]
    assert tx_jobs.effect_rows(shop) == [(1, "charged")]
    assert store.job_list() == []  # inline: nothing was inserted in the jobs table
    assert [h.name.rpartition(".")[2] for h in inline.handles] == [job.__name__, "ChargeCard"]
    assert inline.handles[1].wait() == 1
