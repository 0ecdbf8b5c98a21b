"""Fixtures that honour the caller's transaction (issue 22): ``run_jobs_inline`` runs a
``connection=`` enqueue after the commit, never after a rollback; ``enqueued_jobs`` records it
at the commit, keeps ORM instances as given and matches them by model and primary key; and
``corequeue_app_setup`` puts the application's tables on the test database for every mode."""

from __future__ import annotations

import textwrap

import pytest

SHOP = '''
"""An application: a request inserts an order and enqueues its charge in one transaction."""

import os

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import corequeue


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="new")


engines = {}


def engine():
    url = os.environ["APP_DATABASE_URL"]
    if url not in engines:
        engines[url] = create_engine(url)
    return engines[url]


@corequeue.job
def charge(order_id: int) -> str:
    with Session(engine()) as session, session.begin():
        order = session.get(Order, order_id)
        if order is None:
            raise LookupError(f"no order {order_id}")
        order.status = "paid"
    return "charged"


@corequeue.job
def ship(order: Order, note: str = "") -> None:
    pass


def place_order(fail=False, connection_kind="session"):
    """The request handler. Returns the order's id."""
    with Session(engine()) as session:
        order = Order()
        session.add(order)
        session.flush()
        if connection_kind == "session":
            charge.run_in_worker(order.id, connection=session)
        else:
            charge.run_in_worker(order.id, connection=session.connection())
        ship.run_in_worker(order, note="fragile", connection=session)
        if fail:
            session.rollback()
        else:
            session.commit()
        return order.id


def status(order_id):
    with Session(engine()) as session:
        order = session.get(Order, order_id)
        return None if order is None else order.status
'''

CONFTEST = """
import pytest
import shopapp


@pytest.fixture
def corequeue_app_setup(corequeue_database_url, monkeypatch):
    monkeypatch.setenv("APP_DATABASE_URL", corequeue_database_url)
    shopapp.Base.metadata.create_all(shopapp.engine())
    yield {"APP_DATABASE_URL": corequeue_database_url}
    shopapp.Base.metadata.drop_all(shopapp.engine())
"""


@pytest.fixture
def shop(app_dir: pytest.Pytester) -> pytest.Pytester:
    app_dir.makepyfile(shopapp=textwrap.dedent(SHOP))
    app_dir.makeconftest(textwrap.dedent(CONFTEST))
    return app_dir


def test_inline_jobs_run_after_the_commit_and_never_after_a_rollback(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_inline="""
        import pytest
        from shopapp import place_order, status

        @pytest.mark.parametrize("kind", ["session", "connection"])
        def test_committed(corequeue_store, run_jobs_inline, kind):
            order_id = place_order(connection_kind=kind)
            # ship's Order loads again from corequeue's database (corequeue_store), as in a
            # worker: the app's tables are there too (corequeue_app_setup)
            assert [h.result for h in run_jobs_inline.handles] == ["charged", None]
            assert status(order_id) == "paid"

        @pytest.mark.parametrize("kind", ["session", "connection"])
        def test_rolled_back(corequeue_app_setup, run_jobs_inline, kind):
            place_order(fail=True, connection_kind=kind)
            assert run_jobs_inline.handles == []

        def test_what_a_rolled_back_order_would_have_run(corequeue_app_setup, run_jobs_inline):
            place_order(fail=True)
            assert [h.name for h in run_jobs_inline.handles] == ["shopapp.charge"]
        """
    )
    result = shop.runpytest_subprocess("--corequeue-db=sqlite")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["E *AssertionError: assert * == *'shopapp.charge'*"])


def test_an_inline_job_that_raises_after_the_commit_fails_the_test(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_raise="""
        import pytest
        from sqlalchemy.orm import Session
        from shopapp import Order, charge, engine

        def test_raises_out_of_commit(corequeue_app_setup, run_jobs_inline):
            with Session(engine()) as session:
                charge.run_in_worker(404, connection=session)  # no such order
                with pytest.raises(LookupError, match="no order 404"):
                    session.commit()
                session.add(Order())  # the session is usable again
                session.commit()

        def test_uncaught(corequeue_app_setup, run_jobs_inline):
            with Session(engine()) as session:
                charge.run_in_worker(405, connection=session)
                session.commit()
        """
    )
    result = shop.runpytest_subprocess("--corequeue-db=sqlite")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*session.commit()*", "E *LookupError: no order 405"])


def test_captured_jobs_honour_the_transaction_and_orm_identity(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_capture="""
        from sqlalchemy.orm import Session
        from shopapp import Order, charge, engine, place_order, ship

        def test_committed(corequeue_app_setup, enqueued_jobs):
            order_id = place_order()
            enqueued_jobs.assert_enqueued(charge, order_id)
            with Session(engine()) as other:  # the same row, another instance
                enqueued_jobs.assert_enqueued(ship, other.get(Order, order_id), note="fragile")

        def test_rolled_back(corequeue_app_setup, enqueued_jobs):
            place_order(fail=True)
            enqueued_jobs.refute_enqueued(charge)
            assert len(enqueued_jobs) == 0

        def test_another_order(corequeue_app_setup, enqueued_jobs):
            place_order()
            second = place_order()
            enqueued_jobs.assert_enqueued(ship, Order(id=second + 1))
        """
    )
    result = shop.runpytest_subprocess("--corequeue-db=sqlite")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *AssertionError: expected shopapp.ship(Order#3) to be enqueued and waiting, *",
            "E *Enqueued and waiting (4):",
            "E *shopapp.ship(Order#1, 'fragile') *",
            "E *differs: order: expected Order#3, got Order#1",
        ]
    )


def test_app_setup_reaches_the_worker_children(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_worker="""
        from shopapp import place_order, status

        def test_committed(corequeue_worker):
            order_id = place_order()
            assert [r.name for r in corequeue_worker.drain().succeeded] == [
                "shopapp.charge", "shopapp.ship"
            ]
            assert status(order_id) == "paid"

        def test_rolled_back(corequeue_worker):
            place_order(fail=True)
            assert corequeue_worker.drain().ran == 0
        """
    )
    shop.makepyfile(
        test_bad_setup="""
        import pytest

        @pytest.fixture
        def corequeue_app_setup():
            return "postgresql://elsewhere"

        def test_bad(corequeue_worker):
            pass
        """
    )
    result = shop.runpytest_subprocess("--corequeue-db=sqlite")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*corequeue_app_setup returned 'postgresql://elsewhere': return (or yield) None or a*"]
    )
