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


#: What :func:`seed_history` writes: job names, queues, and the share of failed jobs.
SEED_NAMES = 20
SEED_QUEUES = 5


def seed_history(engine: sa.Engine, *, rows: int, now: datetime, days: float = 30.0) -> None:
    """PostgreSQL: ``rows`` jobs in one INSERT ... SELECT over generate_series, for the
    dashboard's benchmark (benchmarks/dashboard_scale.py): names ``bench.jobs.Job0..19``,
    queues ``q0..q4``, created evenly over the last ``days`` up to ``now``; 1 in 100 failed,
    1 in 1000 cancelled, the newest 10,000 waiting and 50 of those running, the rest
    succeeded; parameters ``{"args":[g],"kwargs":{"user_id":g % 10000}}``. Then VACUUM
    ANALYZE (so the planner and index-only scans see the table as it is)."""
    step = days * 86400.0 / rows
    state = sa.text(
        "CASE WHEN g > :rows - 50 THEN 'running' WHEN g > :rows - 10000 THEN 'requested' "
        "WHEN g % 100 = 0 THEN 'failed' WHEN g % 1000 = 1 THEN 'cancelled' "
        "ELSE 'succeeded' END"
    )
    insert = sa.text(
        "INSERT INTO corequeue_jobs (name, queue, priority, state, params, run_at, created_at, "
        "started_at, finished_at, attempts, max_attempts, unique_key, source, error, worker_id, "
        "lease) "
        "SELECT 'bench.jobs.Job' || (g % :names), 'q' || (g % :queues), 0, s.state, "
        "'{\"args\":[' || g || '],\"kwargs\":{\"user_id\":' || (g % 10000) || '}}', "
        "t.at, t.at, "
        "CASE WHEN s.state IN ('requested') THEN NULL ELSE t.at + interval '50 ms' END, "
        "CASE WHEN s.state IN ('requested', 'running') THEN NULL "
        "ELSE t.at + interval '50 ms' + (g % 1000) * interval '1 ms' END, "
        "CASE WHEN s.state = 'requested' THEN 0 ELSE 1 END, 1, '', 'bench.py:1', "
        "CASE WHEN s.state = 'failed' THEN 'RuntimeError: no stock for ' || g END, "
        "CASE WHEN s.state = 'running' THEN '00000000-0000-0000-0000-000000000001' END, "
        "CASE WHEN s.state = 'running' THEN md5(g::text) END "
        f"FROM generate_series(1, :rows) AS g, LATERAL (SELECT {state} AS state) AS s, "
        "LATERAL (SELECT CAST(:now AS timestamptz) - (:rows - g) * :step * interval '1 second' "
        "AS at) AS t"
    )
    params = {"rows": rows, "names": SEED_NAMES, "queues": SEED_QUEUES, "now": now, "step": step}
    with engine.begin() as conn:
        conn.execute(insert, params)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE corequeue_jobs"))
