"""Queries for corequeue's own tools, not for applications: the test plugin (emptying the
tables between tests, making waiting jobs due in a drain) and ``corequeue.bench``. Their driver
errors pass through untranslated, as they did when these tools ran the statements themselves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from corequeue.core.states import JobState
from corequeue.store import schema
from corequeue.store.base import StoreBase
from corequeue.store.rows import jobs


class SupportQueries(StoreBase):
    """The queries of the test plugin and the benchmark."""

    def job_make_due_many(self, *, queues: Sequence[str], now: datetime) -> int:
        """Make every waiting job of ``queues`` (all queues when empty) due at ``now`` at the
        latest. Returns how many moved."""
        stmt = (
            sa.update(jobs)
            .where(jobs.c.state == JobState.REQUESTED.value, jobs.c.run_at > now)
            .values(run_at=now)
        )
        if queues:
            stmt = stmt.where(jobs.c.queue.in_(list(queues)))
        with self._begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def truncate_all(self) -> None:
        """Delete every job, attempt, worker and schedule, and restart the ids (PostgreSQL).
        The schema version stays."""
        tables = [t for t in schema.metadata.sorted_tables if t is not schema.meta]
        names = ", ".join(t.name for t in tables)
        with self._begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))

    def job_succeeded_window(self, queue: str) -> tuple[int, datetime | None, datetime | None]:
        """How many jobs of ``queue`` succeeded, the first one's start and the last one's end."""
        query = sa.select(
            sa.func.count(), sa.func.min(jobs.c.started_at), sa.func.max(jobs.c.finished_at)
        ).where(jobs.c.queue == queue, jobs.c.state == JobState.SUCCEEDED.value)
        with self.engine.connect() as conn:
            done, first, last = conn.execute(query).one()
        return int(done), first, last

    def job_delete_queue(self, queue: str) -> int:
        """Delete every job of ``queue``. Returns how many were deleted."""
        with self._begin() as conn:
            return int(conn.execute(sa.delete(jobs).where(jobs.c.queue == queue)).rowcount)
