"""One suite, three backends (issue 22): the same test module checks ``enqueued_jobs``'s
assertions with no database (jobs captured in the test's process), on SQLite and on
PostgreSQL (jobs in the database), so the modes cannot drift apart; a failing assertion says
the same thing in each."""

from __future__ import annotations

import re
import textwrap

import pytest

CONFTEST = """
import pytest
import sqlalchemy as sa

import models


@pytest.fixture(
    params=[
        "inline",
        pytest.param("sqlite", marks=pytest.mark.corequeue_db("sqlite")),
        pytest.param("postgresql", marks=pytest.mark.corequeue_db("postgresql")),
    ]
)
def backend(request, tmp_path):
    '''(enqueued_jobs, an engine for the app's tables): inline captures in-process; the
    others write to that database and read the waiting jobs back.'''
    if request.param == "inline":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    else:
        engine = request.getfixturevalue("corequeue_store").engine
    models.Base.metadata.create_all(engine)
    yield request.getfixturevalue("enqueued_jobs"), engine
    models.Base.metadata.drop_all(engine)
"""

MODELS = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "three_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
"""

TESTS = """
import pytest
from sqlalchemy.orm import Session

from appjobs import Add, Boom
from models import Order

import corequeue


@corequeue.job
def ship(order: Order, note: str = "") -> None:
    pass


def test_arguments_match_by_name_and_options_by_value(backend):
    jobs, _ = backend
    Add(2, 3, label="total").run_in_worker(queue="math", priority=4)
    jobs.assert_enqueued(Add, 2, 3)
    jobs.assert_enqueued(Add, a=2, label="total", queue="math", priority=4)
    jobs.refute_enqueued(Add, 9)
    jobs.refute_enqueued(Add, queue="default")
    jobs.refute_enqueued(Boom)
    assert [(j.name, j.arguments) for j in jobs.all()] == [
        ("appjobs.Add", {"a": 2, "b": 3, "label": "total"})
    ]


def test_a_connection_enqueue_counts_once_committed(backend):
    jobs, engine = backend
    with engine.connect() as conn:
        with conn.begin():
            Add(1, 1).run_in_worker(connection=conn)
        with conn.begin() as trans:
            Add(2, 2).run_in_worker(connection=conn)
            trans.rollback()
    with Session(engine) as session:
        Add(3, 3).run_in_worker(connection=session)
        session.rollback()
    jobs.assert_enqueued(Add, 1, 1)
    jobs.refute_enqueued(Add, 2)
    jobs.refute_enqueued(Add, 3)
    assert len(jobs) == 1


def test_orm_instances_match_by_primary_key(backend):
    jobs, engine = backend
    with Session(engine) as session:
        order = Order()
        session.add(order)
        session.flush()
        ship.run_in_worker(order, note="fragile", connection=session)
        session.commit()
        order_id = order.id
    with Session(engine) as other:  # the same row, another instance
        again = other.get(Order, order_id)
    jobs.assert_enqueued(ship, again, note="fragile")
    jobs.assert_enqueued(ship, Order(id=order_id))
    jobs.refute_enqueued(ship, Order(id=order_id + 1))


def test_a_unique_key_holds_one_waiting_job(backend):
    jobs, _ = backend
    first = Add(1, 2).run_in_worker(unique_key="sum")
    assert Add(5, 6).run_in_worker(unique_key="sum").id == first.id
    jobs.assert_enqueued(Add, 1, 2)
    jobs.refute_enqueued(Add, 5)


def test_expect_sees_what_the_block_enqueued(backend):
    jobs, _ = backend
    Add(0, 0).run_in_worker()
    with jobs.expect(Add, 4, queue="math"):
        Add(4, 4).run_in_worker(queue="math")


def test_what_a_wrong_expectation_says(backend):
    jobs, _ = backend
    Add(1, 2).run_in_worker(queue="math")
    jobs.assert_enqueued(Add, 1, 3, queue="mail")
"""


def test_the_assertions_agree_on_every_backend(
    app_dir: pytest.Pytester, with_postgres: str
) -> None:
    app_dir.makepyfile(models=textwrap.dedent(MODELS))
    app_dir.makeconftest(textwrap.dedent(CONFTEST))
    app_dir.makepyfile(test_three=textwrap.dedent(TESTS))
    result = app_dir.runpytest_subprocess("-v")
    result.assert_outcomes(passed=5 * 3, failed=3)
    said = [
        re.sub(r"run_at=\S+", "run_at=...", line[1:].strip())
        for line in result.stdout.lines
        if line.startswith("E ") and ("Add(" in line or "aiting" in line or "differs" in line)
    ]
    expected = [
        "AssertionError: expected appjobs.Add(1, 3) queue='mail' to be enqueued and waiting, "
        "but it is not.",
        "Enqueued and waiting (1):",
        "appjobs.Add(1, 2) queue='math' priority=0 run_at=...",
        "differs: b: expected 3, got 2; queue: expected 'mail', got 'math'",
    ]
    assert said == expected * 3, result.stdout.str()
