"""Maintenance: pruning finished jobs, the workers' heartbeat rows, and rescuing the running
jobs whose worker is gone (or that their worker no longer holds). Which attempts count as lost
and how they end is the core's decision (:func:`corequeue.core.lifecycle.lose`); this module
selects the rows and persists the ends."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from corequeue.core import lifecycle
from corequeue.core.states import FINAL_STATES, JobState, Outcome
from corequeue.store.base import StoreBase
from corequeue.store.records import AttemptEnd, WorkerRecord
from corequeue.store.rows import NOTIFY_CHANNEL, attempt_row, attempts, error_line, jobs, workers
from corequeue.store.writer import Write, write_changes

RESCUE_COLUMNS = [
    jobs.c.id,
    jobs.c.name,
    jobs.c.queue,  # (queue, priority, source, created_at: for the job_lost hook's context)
    jobs.c.priority,
    jobs.c.source,
    jobs.c.created_at,
    jobs.c.lease,
    jobs.c.worker_id,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.run_at,
    jobs.c.started_at,
    jobs.c.worker_losses,
    jobs.c.deferrals,
]


class MaintenanceQueries(StoreBase):
    """Pruning, workers and rescue."""

    def job_prune_many(self, *, finished_before: datetime, batch: int = 5000) -> int:
        """Delete finished jobs (and their attempts) older than ``finished_before``, in
        batches. Returns how many were deleted. On PostgreSQL a job whose row another
        transaction holds (an enqueue clearing its unique key) is left for the next prune."""
        total = 0
        while True:
            old = (
                sa.select(jobs.c.id)
                .where(
                    jobs.c.finished_at.is_not(None),
                    jobs.c.finished_at < finished_before,
                    jobs.c.state.in_([s.value for s in FINAL_STATES]),
                )
                .limit(batch)
            )
            if self.is_postgresql:  # never waits for a row: in no lock cycle (no deadlock)
                old = old.with_for_update(skip_locked=True)
            with self._errors(), self._begin() as conn:
                ids = list(conn.execute(old).scalars())
                if ids:
                    conn.execute(sa.delete(attempts).where(attempts.c.job_id.in_(ids)))
                    conn.execute(sa.delete(jobs).where(jobs.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                return total

    def worker_beat(self, worker: WorkerRecord) -> None:
        """Record that ``worker`` is alive (inserting its row when missing)."""
        values = {
            "host": worker.host,
            "pid": worker.pid,
            "queues": json.dumps(worker.queues),
            "started_at": worker.started_at,
            "last_beat_at": worker.last_beat_at,
            "stats": json.dumps(worker.stats),
        }
        with self._errors(), self._begin() as conn:
            updated = conn.execute(
                sa.update(workers).where(workers.c.id == worker.id).values(values)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(workers).values(id=worker.id, **values))

    def worker_delete(self, worker_id: str) -> None:
        with self._errors(), self._begin() as conn:
            conn.execute(sa.delete(workers).where(workers.c.id == worker_id))

    def worker_list(self) -> list[WorkerRecord]:
        with self._errors(), self.read() as conn:
            rows = conn.execute(sa.select(workers).order_by(workers.c.started_at)).all()
        return [
            WorkerRecord(
                id=r.id,
                host=r.host,
                pid=r.pid,
                queues=json.loads(r.queues),
                started_at=r.started_at,
                last_beat_at=r.last_beat_at,
                stats=json.loads(r.stats or "{}"),
            )
            for r in rows
        ]

    def job_rescue_many(
        self,
        *,
        now: datetime,
        heartbeat_timeout: float,
        retry_delay: Callable[[str, int], float],
        limit: int = 1000,
        rescuer: str | None = None,
        max_worker_losses: Callable[[str], int | None] = lambda name: None,
    ) -> list[AttemptEnd]:
        """Find running jobs whose worker stopped heartbeating (or is gone), record those
        attempts ``lost`` and requeue them without using an attempt, or fail them as a crash
        loop (``max_worker_losses(job name)`` such losses in a row; None: no bound), as
        :func:`~corequeue.core.lifecycle.lose` decides. Returns what was recorded.

        ``retry_delay(job name, attempt)`` gives the wait before the retry. Rows are locked
        with SKIP LOCKED on PostgreSQL, so two rescuers never record the same attempt.
        ``rescuer``, the worker asking, is alive whatever its heartbeat row says (after an
        outage this statement may get through before its heartbeat does): neither its jobs
        nor its row are touched.
        """
        expired_before = lifecycle.lost_before(now, heartbeat_timeout)
        query = self.rescue_statement(expired_before=expired_before, limit=limit, rescuer=rescuer)
        lost = functools.partial(
            lifecycle.lose,
            reason=lifecycle.LostReason.HEARTBEAT_EXPIRED,
            heartbeat_timeout=heartbeat_timeout,
        )
        gone: ColumnElement[bool] = workers.c.last_beat_at < expired_before
        if rescuer is not None:
            gone = sa.and_(gone, workers.c.id != rescuer)
        with self._errors(), self._begin() as conn:
            rows = sorted(conn.execute(query).all(), key=lambda r: r.id)
            ends = self._record_lost(
                conn,
                rows,
                now=now,
                retry_delay=retry_delay,
                lose=lost,
                max_worker_losses=max_worker_losses,
            )
            conn.execute(sa.delete(workers).where(gone))
        return ends

    def rescue_statement(
        self, *, expired_before: datetime, limit: int, rescuer: str | None = None
    ) -> sa.Select[Any]:
        """The running jobs of workers silent since ``expired_before``, but ``rescuer``'s
        (tests EXPLAIN it).

        No ORDER BY: under the worker's planner settings (no sort) it would walk the primary
        key over the whole table, finished history included, on every heartbeat. Unordered,
        it is an index scan of the small partial index of running jobs."""
        alive = sa.select(workers.c.id).where(workers.c.last_beat_at >= expired_before)
        silent: ColumnElement[bool] = jobs.c.worker_id.not_in(alive)
        if rescuer is not None:
            silent = sa.and_(silent, jobs.c.worker_id != rescuer)
        query = (
            sa.select(*RESCUE_COLUMNS)
            .where(
                jobs.c.state == JobState.RUNNING.value,
                sa.or_(jobs.c.worker_id.is_(None), silent),
                jobs.c.started_at < expired_before,
            )
            .limit(limit)
        )
        if self.is_postgresql:
            query = query.with_for_update(skip_locked=True, of=jobs)
        return query

    def job_orphan_rescue_many(
        self,
        *,
        worker_id: str,
        held: set[tuple[int, str]],
        now: datetime,
        retry_delay: Callable[[str, int], float],
    ) -> list[AttemptEnd]:
        """Record ``lost`` the jobs the database says ``worker_id`` runs but that it does not
        hold (``held``: its (id, lease) pairs): an attempt whose result was committed
        asynchronously and forgotten by a database crash, say. Returns what was recorded."""
        query = sa.select(*RESCUE_COLUMNS).where(
            jobs.c.state == JobState.RUNNING.value, jobs.c.worker_id == worker_id
        )
        if self.is_postgresql:
            query = query.with_for_update(skip_locked=True)
        with self._errors(), self._begin() as conn:
            rows = [r for r in conn.execute(query).all() if (r.id, r.lease) not in held]
            return self._record_lost(
                conn,
                rows,
                now=now,
                retry_delay=retry_delay,
                lose=functools.partial(lifecycle.lose, reason=lifecycle.LostReason.NOT_HELD),
            )

    def _record_lost(
        self,
        conn: Connection,
        rows: Sequence[Any],
        *,
        now: datetime,
        retry_delay: Callable[[str, int], float],
        lose: Callable[..., lifecycle.LostAttempt],
        max_worker_losses: Callable[[str], int | None] = lambda name: None,
    ) -> list[AttemptEnd]:
        """Persist, for each running job of ``rows``, the end that ``lose`` (the core's
        :func:`~corequeue.core.lifecycle.lose`, its reason given) decides."""
        ends = []
        for r in rows:
            snap = lifecycle.JobSnapshot(
                JobState.RUNNING,
                r.attempts,
                r.max_attempts,
                r.lease,
                r.run_at,
                r.worker_losses,
                r.deferrals,
            )
            lost = lose(
                snap,
                worker_id=r.worker_id,
                now=now,
                retry_delay=retry_delay(r.name, r.attempts),
                max_worker_losses=max_worker_losses(r.name),
            )
            ends.append(_lost_end(r, lost, now))
        write_changes(
            conn,
            [
                Write(e.job_id, JobState.RUNNING, e.lease, e.change, error=error_line(e))
                for e in ends
            ],
        )
        if ends:
            conn.execute(sa.insert(attempts), [attempt_row(e) for e in ends])
            if self.is_postgresql:
                conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))
        return ends


def _lost_end(r: Any, lost: lifecycle.LostAttempt, now: datetime) -> AttemptEnd:
    """The ending of the attempt of ``r`` (a row of RESCUE_COLUMNS) that ``lost`` decided."""
    return AttemptEnd(
        job_id=r.id,
        lease=r.lease,
        attempt=r.attempts,
        outcome=Outcome.LOST,
        change=lost.change,
        worker_id=r.worker_id,
        started_at=r.started_at,
        finished_at=now,
        error_type=lost.error_type,
        error_message=lost.error_message,
        name=r.name,
        queue=r.queue,
        priority=r.priority,
        source=r.source,
        run_at=r.run_at,
        enqueued_at=r.created_at,
        rule=None if lost.rule is None else lost.rule.value,
    )
