"""A person's actions on jobs (the command line, the dashboard): read one, cancel, retry or
delete one, or many at once in a few statements per batch. What each action does is the core's
decision (:mod:`corequeue.core.lifecycle`); this module reads the jobs, asks, and persists the
answer through the compare-and-set writer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corequeue.core import lifecycle
from corequeue.core.display import missing_job, refusal
from corequeue.core.errors import InvalidTransition, JobNotFound, UniqueViolation
from corequeue.core.states import JobState, Outcome
from corequeue.store import unique
from corequeue.store.base import StoreBase
from corequeue.store.records import AttemptEnd, JobRecord
from corequeue.store.rows import (
    JOB_COLUMNS,
    NOTIFY_CHANNEL,
    attempt_row,
    attempts,
    job_record,
    jobs,
    read_state,
)
from corequeue.store.writer import Write, write_changes

#: How many times an action is decided again when the job changed under it.
_ACTION_TRIES = 10

Decide = Callable[[lifecycle.JobSnapshot], lifecycle.Change]


class _Target(NamedTuple):
    """What a bulk action reads of a job (not its parameters, result or error)."""

    id: int
    name: str
    queue: str
    state: JobState
    attempts: int
    max_attempts: int
    lease: str | None
    run_at: datetime
    worker_id: str | None
    started_at: datetime | None
    unique_key: str

    def snapshot(self) -> lifecycle.JobSnapshot:
        return lifecycle.JobSnapshot(
            self.state, self.attempts, self.max_attempts, self.lease, self.run_at
        )


_TARGET_COLUMNS = [jobs.c[name] for name in _Target._fields]


class AdminQueries(StoreBase):
    """Single-job actions."""

    def job_get(self, job_id: int) -> JobRecord | None:
        with self._errors(), self.read() as conn:
            row = conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id)).first()
        return job_record(row) if row is not None else None

    def job_cancel(self, job_id: int, *, now: datetime) -> JobRecord:
        """Cancel a waiting job, or a running one (its worker stops the child). Raises
        InvalidTransition for a finished job, JobNotFound for an unknown id (each saying so
        in a person's terms: :func:`corequeue.core.display.refusal`)."""
        return self._act(job_id, now, "cancel", lambda snap: lifecycle.cancel(snap, now=now))

    def job_retry(self, job_id: int, *, now: datetime) -> JobRecord:
        """Send a failed or cancelled job back to wait, to run now, with one more attempt.
        Raises InvalidTransition for a job in another state, JobNotFound for an unknown id,
        UniqueViolation when another job holds its unique key."""
        return self._act(job_id, now, "retry", lambda snap: lifecycle.retry(snap, now=now))

    def _act(
        self,
        job_id: int,
        now: datetime,
        action: str,
        decide: Callable[[lifecycle.JobSnapshot], lifecycle.Change],
    ) -> JobRecord:
        with self._errors():
            for _ in range(_ACTION_TRIES):
                job = self.job_get(job_id)
                if job is None:
                    raise JobNotFound(missing_job(job_id))
                try:
                    change = decide(job.snapshot())
                except InvalidTransition:
                    raise InvalidTransition(refusal(job_id, action, job.state)) from None
                with self._begin() as conn:
                    try:
                        done = self._act_write(conn, job, change, now)
                    except sa.exc.IntegrityError as exc:
                        if "unique" not in str(exc.orig).lower():
                            raise
                        raise UniqueViolation(
                            f"job {job_id} cannot wait again: another {job.name} job holds the "
                            f"unique key {job.unique_key!r} (it is waiting or running, or within "
                            "its unique_until period); cancel that one first or let it finish"
                        ) from None
                if done:
                    after = self.job_get(job_id)
                    assert after is not None
                    return after
        raise InvalidTransition(f"job {job_id} kept changing state; try again")

    def _act_write(
        self, conn: Connection, job: JobRecord | _Target, change: lifecycle.Change, now: datetime
    ) -> bool:
        """Apply ``change`` if ``job`` is still as read (state, lease and attempts)."""
        write = Write(job.id, job.state, job.lease, change, job.attempts, ends_attempt=False)
        if not write_changes(conn, [write]):
            return False
        if job.unique_key and change.state is JobState.REQUESTED:
            unique.retake(conn, job.id, now=now)
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
        job was deleted (False: there is no such job); raises InvalidTransition for a running
        one."""
        with self._errors(), self._begin() as conn:
            found = conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
            if found is not None:
                state = read_state(found)
                try:
                    lifecycle.check_delete(state)
                except InvalidTransition:
                    raise InvalidTransition(refusal(job_id, "delete", state)) from None
            deletable = [s.value for s in lifecycle.DELETABLE]
            return bool(
                conn.execute(
                    sa.delete(jobs).where(jobs.c.id == job_id, jobs.c.state.in_(deletable))
                ).rowcount
            )

    # -- many jobs at once ----------------------------------------------------------------

    def job_act_many(
        self, ids: Sequence[int], action: lifecycle.Action, *, now: datetime
    ) -> tuple[int, int]:
        """Apply a person's ``action`` (retry, cancel or delete) to the jobs ``ids`` in one
        transaction of a few statements: (done, skipped). Each job's change is the core's
        decision, written by the compare-and-set writer; a job whose state does not allow the
        action, or that changed or went meanwhile, is skipped."""
        if action is lifecycle.Action.DELETE:
            return self._delete_many(ids)
        if action not in (lifecycle.Action.RETRY, lifecycle.Action.CANCEL):
            raise ValueError(f"{action.value!r} is not an action a person takes on jobs")
        step = lifecycle.retry if action is lifecycle.Action.RETRY else lifecycle.cancel

        def decide(snap: lifecycle.JobSnapshot) -> lifecycle.Change:
            return step(snap, now=now)

        if not ids:
            return 0, 0
        with self._errors():
            try:
                with self._begin() as conn:
                    return self._act_many(conn, ids, decide, now)
            except sa.exc.IntegrityError as exc:
                if "unique" not in str(exc.orig).lower():
                    raise
            # A retried job's unique key is taken by another: this batch, one job at a time.
            return self._act_each(ids, action, decide, now)

    def _act_many(
        self, conn: Connection, ids: Sequence[int], decide: Decide, now: datetime
    ) -> tuple[int, int]:
        # In ascending id, so the running jobs' rows are locked in that order, like every
        # statement locking several job rows (a worker's ending batch): no cycle of waits.
        query = sa.select(*_TARGET_COLUMNS).where(jobs.c.id.in_(list(ids))).order_by(jobs.c.id)
        targets = [
            _Target(**{**row._mapping, "state": read_state(row.state)})
            for row in conn.execute(query)
        ]
        skipped = len(set(ids)) - len(targets)  # gone
        waiting: list[tuple[_Target, lifecycle.Change]] = []
        running: list[tuple[_Target, lifecycle.Change]] = []
        for target in targets:
            try:
                change = decide(target.snapshot())
            except InvalidTransition:
                skipped += 1
                continue
            is_running = target.state is JobState.RUNNING and target.lease is not None
            (running if is_running else waiting).append((target, change))
        writes = [
            Write(t.id, t.state, t.lease, c, t.attempts, ends_attempt=False) for t, c in waiting
        ]
        done = write_changes(conn, writes) if writes else 0
        skipped += len(writes) - done
        for target, change in waiting:
            if target.unique_key and change.state is JobState.REQUESTED:
                unique.retake(conn, target.id, now=now)
        for target, change in running:  # their attempts end too: one by one (few run at once)
            if self._act_write(conn, target, change, now):
                done += 1
            else:
                skipped += 1
        if self.is_postgresql:
            for queue in sorted({t.queue for t, c in waiting if c.state is JobState.REQUESTED}):
                conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, queue)))
        return done, skipped

    def _act_each(
        self, ids: Sequence[int], action: str, decide: Decide, now: datetime
    ) -> tuple[int, int]:
        done = skipped = 0
        for job_id in ids:
            try:
                self._act(job_id, now, action, decide)
                done += 1
            except (JobNotFound, InvalidTransition, UniqueViolation):
                skipped += 1
        return done, skipped

    def _delete_many(self, ids: Sequence[int]) -> tuple[int, int]:
        if not ids:
            return 0, 0
        deletable = [s.value for s in lifecycle.DELETABLE]
        with self._errors(), self._begin() as conn:
            deleted = conn.execute(
                sa.delete(jobs).where(jobs.c.id.in_(list(ids)), jobs.c.state.in_(deletable))
            ).rowcount
        return deleted, len(set(ids)) - deleted
