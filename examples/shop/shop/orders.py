"""Checkout: the request handler inserts an order and enqueues its charge in one transaction;
the job reads the order the request committed. A nightly schedule counts the day's orders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select

import corequeue
from shop import db


class CheckoutRefused(Exception):
    pass


@corequeue.job(queue="payments", retries=3)
def charge_order(order_id: int, card: str) -> str:
    """Charge a committed order: the request's row must be there (LookupError if not)."""
    with db.session() as session, session.begin():
        order = session.get(db.Order, order_id)
        if order is None:
            raise LookupError(f"no order {order_id}")
        order.status = "paid"
        email = order.email
    job = corequeue.current_job()
    attempt = job.attempt if job is not None else 0
    return f"order {order_id} charged to {card} for {email} (attempt {attempt})"


def checkout(email: str, amount: Decimal, card: str) -> int:
    """The request handler: one transaction inserts the order and enqueues its charge. A
    refused checkout (an amount that is not positive) rolls both back. Returns the order id."""
    with db.session() as session, session.begin():
        order = db.Order(email=email, amount=amount)
        session.add(order)
        session.flush()  # the order's id, still in this transaction
        charge_order.run_in_worker(order.id, card, connection=session)
        if amount <= 0:
            raise CheckoutRefused(f"amount {amount} is not positive: nothing is charged")
    return order.id


@corequeue.job(queue="reports")
def daily_report() -> int:
    """Count the orders, stamped with the occurrence the schedule enqueued it for."""
    job = corequeue.current_job()
    assert job is not None, "daily_report runs as a job"
    with db.session() as session, session.begin():
        count = session.scalar(select(func.count()).select_from(db.Order)) or 0
        session.add(db.DailyReport(made_for=job.run_at, orders=count))
    return count


corequeue.schedule("daily-report", job=daily_report.call(), cron="0 2 * * *")


def reports() -> list[tuple[datetime, int]]:
    with db.session() as session:
        rows = session.scalars(select(db.DailyReport).order_by(db.DailyReport.made_for))
        return [(r.made_for, r.orders) for r in rows]


def order_status(order_id: int) -> str | None:
    with db.session() as session:
        order = session.get(db.Order, order_id)
        return None if order is None else order.status
