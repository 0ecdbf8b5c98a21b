"""ORM instances as job parameters, loaded in the application's session
(``corequeue.configure(..., session_factory=Session)``), attempt by attempt in this process and
inline, on SQLite and PostgreSQL. Under a real worker: tests/reliability/test_orm_params.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.orm.exc import DetachedInstanceError

from corequeue import runtime
from corequeue.core.params import decode_value
from corequeue.core.states import JobState, Outcome
from corequeue.executor.task import Task, TaskResult, run_task
from corequeue.jobs import Job
from corequeue.store.queries import Store
from corequeue.testing.inline import InlineJobs
from corequeue.worker.endings import decide
from testing import orm_jobs
from testing.orm_jobs import Order, PayOrder, ShipOrder

SHIPPED = {"customer": "Ada", "orders": [10, 11]}


@pytest.fixture
def shop(store: Store, database_url: str) -> Iterator[tuple[str, Order]]:
    """Ada and her two orders in the configured database, with the session factory set."""
    orm_jobs.create_tables(database_url)
    first, _ = orm_jobs.seed(database_url)
    orm_jobs.use(database_url)
    try:
        yield database_url, first
    finally:
        bind = orm_jobs.Session.kw.get("bind")
        if bind is not None:
            bind.dispose()


def attempt(seen: list[Job] | None = None) -> TaskResult:
    """Claim the next job, run one attempt as a worker's child does, record its ending."""
    store = runtime.get_store()
    now = datetime.now(UTC)
    (job,) = store.job_claim_many(queues=["default"], limit=1, lease="l", worker_id="w", now=now)

    def keep(instance: Job) -> object:
        if seen is not None:
            seen.append(instance)
        return instance.run()

    result = run_task(Task.of(job, "w"), keep, codecs=runtime.codecs())
    if not result.recorded:
        store.job_finish_many([decide(job, result, datetime.now(UTC), "w", interrupted=False)])
    return result


def test_an_orm_parameter_loads_in_the_applications_session_open_while_the_job_runs(
    shop: tuple[str, Order],
) -> None:
    handle = ShipOrder(shop[1]).run_in_worker()
    seen: list[Job] = []
    result = attempt(seen)
    assert result.outcome is Outcome.SUCCEEDED, result.error_message
    assert decode_value(result.result or "null") == SHIPPED  # lazy relationships loaded
    assert handle.refresh().state is JobState.SUCCEEDED
    # Closed when the attempt ended: the instance is no longer in a session.
    (job,) = seen
    assert isinstance(job, ShipOrder) and inspect(job.order).session is None


def test_inline_too(shop: tuple[str, Order]) -> None:
    with InlineJobs():
        handle = ShipOrder(shop[1]).run_in_worker()
    assert handle.wait() == SHIPPED


def test_inside_the_transaction_the_instances_write_with_the_success(
    shop: tuple[str, Order], tmp_path: Path
) -> None:
    """PayOrder sets ``order.status`` inside ``transaction()`` (its session moves onto the
    transaction's connection): the first attempt's change rolls back with its failure, the
    second commits with its success."""
    url, order = shop
    handle = PayOrder(order, str(tmp_path)).run_in_worker(retries=1)
    first = attempt()
    assert (first.outcome, first.recorded) == (Outcome.ERRORED, False)
    assert orm_jobs.status_of(url, order.id) == "new"
    second = attempt()
    assert (second.outcome, second.recorded) == (Outcome.SUCCEEDED, True), second.error_message
    assert orm_jobs.status_of(url, order.id) == "paid"
    assert handle.refresh().result == "paid by Ada"


def test_a_row_deleted_since_the_enqueue_fails_the_job_without_retries(
    shop: tuple[str, Order],
) -> None:
    order = shop[1]
    handle = ShipOrder(order).run_in_worker(retries=3)
    with orm_jobs.Session() as session:
        session.delete(session.get(Order, order.id))
        session.commit()
    result = attempt()
    assert (result.outcome, result.no_retry) == (Outcome.ERRORED, True)
    assert result.error_message == (
        f"job {handle.id} (testing.orm_jobs.ShipOrder) has unusable parameters: "
        "testing.orm_jobs.Order with primary key (10,) no longer exists (deleted since the job "
        "was enqueued): the job cannot run, and is not retried"
    )
    record = handle.refresh().record
    assert record is not None
    assert (record.state, record.attempts) == (JobState.FAILED, 1)  # 3 retries left, none used


def test_without_a_session_factory_an_orm_parameter_arrives_detached(
    shop: tuple[str, Order],
) -> None:
    """Today's behaviour, documented: loaded in a throwaway session on corequeue's engine,
    then detached; its columns are there, a relationship not loaded yet raises."""
    runtime.reset()  # forgets the session factory (configure(...) without one keeps it)
    orm_jobs.use(shop[0], session_factory=False)
    ShipOrder(shop[1]).run_in_worker()
    seen: list[Job] = []
    result = attempt(seen)
    assert result.outcome is Outcome.ERRORED
    assert result.error_type == "sqlalchemy.orm.exc.DetachedInstanceError"
    (job,) = seen
    assert isinstance(job, ShipOrder)
    assert (job.order.id, job.order.status) == (10, "new")
    with pytest.raises(DetachedInstanceError):
        _ = job.order.customer
