"""ORM parameters under a real worker, on SQLite and PostgreSQL: the application's module
(testing/orm_jobs.py) calls ``corequeue.configure(url, session_factory=Session)`` when the
worker imports it, and its jobs' ORM instances load in that session in the worker's child,
lazy relationships and writes through the job's transaction included; a row deleted since
the enqueue fails its job at once. (In-process and inline: tests/store/test_orm_params.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from corequeue.core.states import JobState, Outcome
from corequeue.store.queries import Store
from testing import orm_jobs
from testing.faults import WorkerProcess
from testing.orm_jobs import Order, PayOrder, ShipOrder
from tests.reliability.conftest import Spawner


def _url(store: Store) -> str:
    return store.url.render_as_string(hide_password=False)


@pytest.fixture(params=["postgresql", "sqlite"])
def shop(request: pytest.FixtureRequest) -> tuple[Store, Order, Order]:
    """Ada and her two orders in the store's database (corequeue's, as the app's here)."""
    name = "pg_store" if request.param == "postgresql" else "sqlite_store"
    store: Store = request.getfixturevalue(name)
    orm_jobs.create_tables(_url(store))
    first, second = orm_jobs.seed(_url(store))
    return store, first, second


def burst(spawn: Spawner, url: str) -> WorkerProcess:
    """A burst worker of the application (testing.orm_jobs configures itself from
    ORM_JOBS_URL as the worker imports it), run to its end."""
    worker = spawn(url, "--burst", env={"ORM_JOBS_URL": url}, imports=("testing.orm_jobs",))
    assert worker.wait_exit(120) == 0, spawn.logs()
    return worker


def test_orm_parameters_load_in_the_applications_session_in_a_worker(
    shop: tuple[Store, Order, Order], spawn: Spawner, tmp_path: Path
) -> None:
    store, first, second = shop
    ship = ShipOrder(first).run_in_worker()
    pay = PayOrder(second, str(tmp_path)).run_in_worker(retries=1)
    burst(spawn, _url(store))
    assert ship.wait(timeout=5) == {"customer": "Ada", "orders": [10, 11]}  # lazy loads
    assert pay.wait(timeout=5) == "paid by Ada"
    assert [a.outcome for a in store.attempt_list(pay.id)] == [Outcome.ERRORED, Outcome.SUCCEEDED]
    assert orm_jobs.status_of(_url(store), second.id) == "paid"  # the successful attempt's


def test_a_row_deleted_since_the_enqueue_fails_its_job_at_once_in_a_worker(
    shop: tuple[Store, Order, Order], spawn: Spawner
) -> None:
    store, first, _ = shop
    handle = ShipOrder(first).run_in_worker(retries=3)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(Order.__table__).where(Order.__table__.c.id == first.id))
    burst(spawn, _url(store))
    record = handle.refresh().record
    assert record is not None
    assert (record.state, record.attempts) == (JobState.FAILED, 1)
    assert "testing.orm_jobs.Order with primary key (10,) no longer exists" in (record.error or "")
    assert "not retried" in (record.error or "")
