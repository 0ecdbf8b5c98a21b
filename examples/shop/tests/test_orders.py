"""Checkout inserts an order and enqueues its charge in one transaction: the charge runs only
once that transaction has committed, and never when it rolls back. The same two cases in each
mode of the plugin (inline, captured, a real worker), and the nightly schedule by time travel."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from shop.orders import (
    CheckoutRefused,
    charge_order,
    checkout,
    daily_report,
    order_status,
    reports,
)

CARD = "4242-4242-4242-4242"


def test_inline_the_charge_runs_after_the_commit_and_sees_the_order(shop_db, run_jobs_inline):
    order_id = checkout("ada@example.com", Decimal("12.00"), CARD)
    (handle,) = run_jobs_inline.handles
    assert handle.result == f"order {order_id} charged to {CARD} for ada@example.com (attempt 1)"
    assert order_status(order_id) == "paid"


def test_inline_a_rolled_back_checkout_charges_nothing(shop_db, run_jobs_inline):
    with pytest.raises(CheckoutRefused):
        checkout("bob@example.com", Decimal("0.00"), CARD)
    assert run_jobs_inline.handles == []


def test_captured_the_charge_is_enqueued_when_the_checkout_commits(shop_db, enqueued_jobs):
    order_id = checkout("cy@example.com", Decimal("5.00"), CARD)
    enqueued_jobs.assert_enqueued(charge_order, order_id, card=CARD, queue="payments")
    assert order_status(order_id) == "new"  # captured: nothing ran


def test_captured_a_rolled_back_checkout_enqueues_nothing(shop_db, enqueued_jobs):
    with pytest.raises(CheckoutRefused):
        checkout("dee@example.com", Decimal("-1.00"), CARD)
    enqueued_jobs.refute_enqueued(charge_order)


def test_a_real_worker_charges_the_committed_order(corequeue_worker):
    order_id = checkout("eve@example.com", Decimal("30.00"), CARD)
    result = corequeue_worker.drain()
    assert [r.name for r in result.succeeded] == [charge_order.name]
    assert order_status(order_id) == "paid"  # the child wrote to the test's database


def test_a_real_worker_finds_nothing_after_a_rolled_back_checkout(corequeue_worker):
    with pytest.raises(CheckoutRefused):
        checkout("fay@example.com", Decimal("0.00"), CARD)
    assert corequeue_worker.drain().ran == 0


def test_the_daily_report_runs_at_two_each_night(corequeue_worker):
    checkout("gus@example.com", Decimal("8.00"), CARD)
    start = datetime.now(UTC)
    result = corequeue_worker.drain(until=timedelta(days=2))
    first = start.replace(hour=2, minute=0, second=0, microsecond=0)
    if first <= start:
        first += timedelta(days=1)
    nights = [first, first + timedelta(days=1)]
    assert [r.name for r in result.succeeded].count(daily_report.name) == 2
    # Each report is stamped with the occurrence it ran for (current_job().run_at), and
    # counts the order the test placed (charged in the first stop of the drain).
    assert [(made_for.astimezone(UTC), n) for made_for, n in reports()] == [
        (night, 1) for night in nights
    ]
