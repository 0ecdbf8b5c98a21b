"""The shop's job tests: they need nothing but corequeue's pytest plugin."""

from decimal import Decimal

import pytest
from shop.jobs import PaymentDeclined, charge_card, place_order, send_receipt


def test_a_declined_card_raises_in_the_test(run_jobs_inline):
    # The job runs at once; its exception comes out of run_in_worker().
    with pytest.raises(PaymentDeclined, match="declined for order 1"):
        place_order(1, "4000-0000-0000-0002", Decimal("9.99"))
    # PaymentDeclined is in discard_on: one attempt of the four retries=3 allows.
    assert run_jobs_inline.handles[0].attempts == 1


def test_a_charge_returns_its_result_after_a_json_round_trip(run_jobs_inline):
    handle = charge_card.run_in_worker(2, "4242-4242-4242-4242", Decimal("19.50"))
    assert handle.state == "succeeded"
    assert handle.result == {"order_id": "2", "charged": "19.50"}
    # Jobs enqueued by a job run inline too.
    ran = [h.name for h in run_jobs_inline.handles]
    assert ran == ["shop.jobs.charge_card", "shop.jobs.send_receipt"]


def test_the_charge_logs_its_job_id_and_attempt(run_jobs_inline, caplog):
    caplog.set_level("INFO", logger="shop")
    handle = charge_card.run_in_worker(6, "4242-4242-4242-4242", Decimal("1.00"))
    assert f"charging order 6 (job {handle.id}, attempt 1)" in caplog.text


def test_placing_an_order_enqueues_a_charge(enqueued_jobs):
    place_order(3, "4242-4242-4242-4242", Decimal("5.00"))
    # Positional and keyword arguments match by parameter name; arguments left out are not
    # compared. queue= and priority= are enqueue options.
    enqueued_jobs.assert_enqueued(charge_card, 3, amount=Decimal("5.00"), queue="payments")
    enqueued_jobs.refute_enqueued(send_receipt)


def test_a_charge_enqueues_the_receipt(enqueued_jobs):
    # Called directly, a job function runs here, as a plain function.
    with enqueued_jobs.expect(send_receipt, order_id=4, queue="mail"):
        charge_card(4, "4242-4242-4242-4242", Decimal("1.00"))


@pytest.mark.corequeue_db("postgresql")
def test_a_real_worker_charges_and_sends_the_receipt(corequeue_worker):
    handle = charge_card.run_in_worker(5, "4242-4242-4242-4242", Decimal("7.25"))
    result = corequeue_worker.drain()  # raises if any job failed, listing each with its error
    names = [r.name for r in result.succeeded]
    assert names == ["shop.jobs.charge_card", "shop.jobs.send_receipt"]
    assert handle.refresh().state == "succeeded"
    assert handle.result == {"order_id": "5", "charged": "7.25"}
