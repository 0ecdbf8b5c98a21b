"""The shop's job tests: they need nothing but corequeue's pytest plugin."""

from decimal import Decimal

import pytest
from shop.jobs import ChargeCard, PaymentDeclined, SendReceipt, place_order


def test_a_declined_card_raises_in_the_test(run_jobs_inline):
    with pytest.raises(PaymentDeclined, match="declined for order 1"):
        place_order(1, "4000-0000-0000-0002", Decimal("9.99"))


def test_a_charge_returns_its_result_after_a_json_round_trip(run_jobs_inline):
    handle = ChargeCard(2, "4242-4242-4242-4242", Decimal("19.50")).run_in_worker()
    assert handle.state == "succeeded"
    assert handle.result == {"order_id": "2", "charged": "19.50"}
    # The receipt ran inline too, from inside the charge.
    ran = [h.name for h in run_jobs_inline.handles]
    assert ran == ["shop.jobs.ChargeCard", "shop.jobs.SendReceipt"]


def test_placing_an_order_enqueues_a_charge(enqueued_jobs):
    place_order(3, "4242-4242-4242-4242", Decimal("5.00"))
    enqueued_jobs.assert_enqueued(ChargeCard, 3, amount=Decimal("5.00"), queue="payments")
    enqueued_jobs.refute_enqueued(SendReceipt)


def test_a_charge_enqueues_the_receipt(enqueued_jobs):
    charge = ChargeCard(4, "4242-4242-4242-4242", Decimal("1.00"))
    with enqueued_jobs.expect(SendReceipt, order_id=4, queue="mail"):
        charge.run()


@pytest.mark.corequeue_db("postgresql")
def test_a_real_worker_charges_and_sends_the_receipt(corequeue_worker):
    handle = ChargeCard(5, "4242-4242-4242-4242", Decimal("7.25")).run_in_worker()
    result = corequeue_worker.drain()
    assert [r.name for r in result.succeeded] == ["shop.jobs.ChargeCard", "shop.jobs.SendReceipt"]
    assert handle.refresh().state == "succeeded"
    assert handle.result == {"order_id": "5", "charged": "7.25"}
    assert corequeue_worker.store.is_postgresql
