"""An application whose jobs take ORM instances (tests/store/test_orm_params.py,
tests/reliability/test_orm_params.py): a ``Customer`` with ``orders``, an ``Order`` with its
``customer`` (lazy relationships both), and a session factory given to
``corequeue.configure(..., session_factory=Session)``.

In a worker, this module configures itself from ``ORM_JOBS_URL`` when it is imported, as an
application's module would; a test in this process calls :func:`use` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

import corequeue
from corequeue import Job, register_job


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "orm_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    orders: Mapped[list[Order]] = relationship(back_populates="customer")


class Order(Base):
    __tablename__ = "orm_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("orm_customers.id"))
    status: Mapped[str] = mapped_column(sa.String(20), default="new")
    customer: Mapped[Customer] = relationship(back_populates="orders")


Session = sessionmaker()


def use(url: str, *, session_factory: bool = True) -> None:
    """Point the session factory and corequeue at ``url`` (corequeue's database)."""
    Session.configure(bind=sa.create_engine(url))
    corequeue.configure(url, session_factory=Session if session_factory else None)


def create_tables(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def seed(url: str) -> tuple[Order, Order]:
    """A customer (Ada) with two orders; returns them (detached, with their ids)."""
    engine = sa.create_engine(url)
    try:
        with sessionmaker(bind=engine, expire_on_commit=False)() as session:
            ada = Customer(id=1, name="Ada")
            first, second = Order(id=10, customer=ada), Order(id=11, customer=ada)
            session.add_all([ada, first, second])
            session.commit()
            return first, second
    finally:
        engine.dispose()


def status_of(url: str, order_id: int) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(Order.status).where(Order.id == order_id)
            return str(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


if os.environ.get("ORM_JOBS_URL"):
    use(os.environ["ORM_JOBS_URL"])


@register_job
class ShipOrder(Job):
    """Reads through lazy relationships of the order it was given."""

    def __init__(self, order: Order) -> None:
        self.order = order

    def run(self) -> dict[str, object]:
        customer = self.order.customer  # a lazy load: the session is still open
        return {"customer": customer.name, "orders": sorted(o.id for o in customer.orders)}


@register_job
class PayOrder(Job):
    """Marks its order paid inside the job's transaction; its first run (no marker file yet in
    ``mark_dir``) then fails, so that change must roll back."""

    def __init__(self, order: Order, mark_dir: str) -> None:
        self.order, self.mark_dir = order, mark_dir

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> str:
        ctx = corequeue.current_job()
        assert ctx is not None
        with ctx.transaction():
            self.order.status = "paid"  # flushed into the transaction when run() returns
            note = f"paid by {self.order.customer.name}"
        mark = Path(self.mark_dir) / f"paid-{self.order.id}"
        if not mark.exists():
            mark.write_text("first run")
            raise RuntimeError("the first attempt fails after paying")
        return note
