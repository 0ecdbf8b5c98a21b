"""The application's background jobs (the worker runs ``corequeue run --import signups.jobs``)."""

from __future__ import annotations

import sqlalchemy as sa

import corequeue
from corequeue import Job, register_job
from signups.models import User


@register_job
class SendWelcome(Job):
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id

    def default_queue(self) -> str:
        return "mail"

    def run(self) -> dict[str, object]:
        # corequeue's engine reaches the application's database: one database for both.
        with corequeue.get_store().engine.begin() as conn:
            conn.execute(sa.update(User).where(User.id == self.user_id).values(welcomed=True))
        return {"welcomed": self.user_id}
