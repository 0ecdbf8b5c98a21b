"""A person's actions on one job (the command line, the dashboard): read it, cancel it, retry
it, delete it. What each action does is the core's decision (:mod:`corequeue.core.lifecycle`);
this module reads the job, asks, and persists the answer through the compare-and-set writer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corequeue.core import lifecycle
from corequeue.core.errors import InvalidTransition, UniqueViolation
from corequeue.core.states import JobState, Outcome
from corequeue.store.base import StoreBase
from corequeue.store.records import AttemptEnd, JobRecord
from corequeue.store.rows import (
    JOB_COLUMNS,
    NOTIFY_CHANNEL,
    attempt_row,
    attempts,
    job_record,
    jobs,
)
from corequeue.store.writer import Write, write_changes

#: How many times an action is decided again when the job changed under it.
_ACTION_TRIES = 10


class AdminQueries(StoreBase):
    """Single-job actions."""

    def job_get(self, job_id: int) -> JobRecord | None:
        with self._errors(), self.read() as conn:
            row = conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id)).first()
        return job_record(row) if row is not None else None

    def job_cancel(self, job_id: int, *, now: datetime) -> JobRecord:
        """Cancel a waiting job, or a running one (its worker stops the child). Raises
        InvalidTransition for a finished job, KeyError for an unknown id."""
        return self._act(job_id, now, lambda snap: lifecycle.cancel(snap, now=now))

    def job_retry(self, job_id: int, *, now: datetime) -> JobRecord:
        """Send a failed or cancelled job back to wait, to run now, with one more attempt."""
        return self._act(job_id, now, lambda snap: lifecycle.retry(snap, now=now))

    def _act(
        self,
        job_id: int,
        now: datetime,
        decide: Callable[[lifecycle.JobSnapshot], lifecycle.Change],
    ) -> JobRecord:
        with self._errors():
            for _ in range(_ACTION_TRIES):
                job = self.job_get(job_id)
                if job is None:
                    raise KeyError(f"no job with id {job_id}")
                change = decide(job.snapshot())
                with self._begin() as conn:
                    try:
                        done = self._act_write(conn, job, change, now)
                    except sa.exc.IntegrityError as exc:
                        if "unique" not in str(exc.orig).lower():
                            raise
                        raise UniqueViolation(
                            f"job {job_id} cannot wait again: another {job.name} job with unique "
                            f"key {job.unique_key!r} is already waiting or running; cancel that "
                            "one first or let it finish"
                        ) from None
                if done:
                    after = self.job_get(job_id)
                    assert after is not None
                    return after
        raise InvalidTransition(f"job {job_id} kept changing state; try again")

    def _act_write(
        self, conn: Connection, job: JobRecord, change: lifecycle.Change, now: datetime
    ) -> bool:
        """Apply ``change`` if ``job`` is still as read (state, lease and attempts)."""
        write = Write(job.id, job.state, job.lease, change, job.attempts, ends_attempt=False)
        if not write_changes(conn, [write]):
            return False
        if job.state is JobState.RUNNING and job.lease is not None:
            # The running attempt ends here; its worker's late result will be refused.
            end = AttemptEnd(
                job_id=job.id,
                lease=job.lease,
                attempt=job.attempts,
                outcome=Outcome.CANCELLED,
                change=change,
                worker_id=job.worker_id,
                started_at=job.started_at,
                finished_at=now,
                error_type="Cancelled",
                error_message="cancelled by request while running",
            )
            conn.execute(sa.insert(attempts).values(attempt_row(end)))
        if self.is_postgresql and change.state is JobState.REQUESTED:
            conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, job.queue)))
        return True

    def job_delete(self, job_id: int) -> bool:
        """Delete a job that is not running (cancel a running one first). Returns whether a
        job was deleted."""
        with self._errors(), self._begin() as conn:
            found = conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
            if found is not None:
                try:
                    lifecycle.check_delete(JobState(found))
                except InvalidTransition:
                    raise InvalidTransition(
                        f"job {job_id} is {found}: cancel it before deleting it"
                    ) from None
            deletable = [s.value for s in lifecycle.DELETABLE]
            return bool(
                conn.execute(
                    sa.delete(jobs).where(jobs.c.id == job_id, jobs.c.state.in_(deletable))
                ).rowcount
            )
