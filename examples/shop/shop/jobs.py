"""The shop's background jobs."""

from __future__ import annotations

from decimal import Decimal

from corequeue import Job, register_job

#: Stands in for a payment provider: card numbers it declines.
DECLINED_CARDS = {"4000-0000-0000-0002"}


class PaymentDeclined(Exception):
    pass


@register_job
class ChargeCard(Job):
    def __init__(self, order_id: int, card: str, amount: Decimal):
        self.order_id, self.card, self.amount = order_id, card, amount

    def default_queue(self) -> str:
        return "payments"

    def run(self) -> dict[str, str]:
        if self.card in DECLINED_CARDS:
            raise PaymentDeclined(f"card {self.card} declined for order {self.order_id}")
        SendReceipt(self.order_id, email=f"order-{self.order_id}@example.com").run_in_worker()
        return {"order_id": str(self.order_id), "charged": str(self.amount)}


@register_job
class SendReceipt(Job):
    def __init__(self, order_id: int, email: str):
        self.order_id, self.email = order_id, email

    def default_queue(self) -> str:
        return "mail"

    def run(self) -> str:
        return f"receipt for order {self.order_id} sent to {self.email}"


def place_order(order_id: int, card: str, amount: Decimal) -> None:
    """What the web view does: charge the card in the background."""
    ChargeCard(order_id, card, amount).run_in_worker()
