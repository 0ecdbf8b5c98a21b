"""The shop's background jobs: function jobs, and the job context in the log."""

from __future__ import annotations

import logging
from decimal import Decimal

import corequeue

log = logging.getLogger("shop")

#: Stands in for a payment provider: card numbers it declines.
DECLINED_CARDS = {"4000-0000-0000-0002"}


class PaymentDeclined(Exception):
    pass


@corequeue.job(queue="payments", retries=3, discard_on=(PaymentDeclined,))
def charge_card(order_id: int, card: str, amount: Decimal) -> dict[str, str]:
    job = corequeue.current_job()  # None when called directly, outside a worker
    if job is not None:
        log.info("charging order %d (job %d, attempt %d)", order_id, job.id, job.attempt)
    if card in DECLINED_CARDS:  # in discard_on: never retried
        raise PaymentDeclined(f"card {card} declined for order {order_id}")
    send_receipt.run_in_worker(order_id, email=f"order-{order_id}@example.com")
    return {"order_id": str(order_id), "charged": str(amount)}


@corequeue.job(queue="mail")
def send_receipt(order_id: int, email: str) -> str:
    return f"receipt for order {order_id} sent to {email}"


def place_order(order_id: int, card: str, amount: Decimal) -> None:
    """What the web view does: charge the card in the background."""
    charge_card.run_in_worker(order_id, card, amount)
