"""Reading jobs: lists, a job's attempts, counts, and when the next waiting job is due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from corequeue.core import claims
from corequeue.core.states import JobState
from corequeue.store import flow_sql, schema
from corequeue.store.base import StoreBase
from corequeue.store.endings import ON_JOB_ROW, ON_JOB_ROW_STATE
from corequeue.store.records import AttemptRecord, JobFilter, JobRecord
from corequeue.store.rows import (
    JOB_COLUMNS,
    attempts,
    filter_clauses,
    job_record,
    jobs,
    read_outcome,
    read_state,
)


class ReadQueries(StoreBase):
    """Reading jobs and attempts."""

    def job_list(
        self, filter: JobFilter | None = None, *, limit: int = 50, before_id: int | None = None
    ) -> list[JobRecord]:
        """Jobs matching ``filter``, newest first; pass the last id seen as ``before_id`` for
        the next page (keyset pagination)."""
        query = sa.select(*JOB_COLUMNS).order_by(jobs.c.id.desc()).limit(limit)
        query = query.where(*filter_clauses(filter or JobFilter()))
        if before_id is not None:
            query = query.where(jobs.c.id < before_id)
        with self._errors(), self.read() as conn:
            return [job_record(r) for r in conn.execute(query)]

    def attempt_list(self, job_id: int) -> list[AttemptRecord]:
        """A job's attempts, first to last: its attempt rows, then the attempt its job row
        keeps when it succeeded (``ON_JOB_ROW``: that one has no row of its own)."""
        query = sa.select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.id)
        kept = sa.select(
            jobs.c.id, jobs.c.attempts, jobs.c.worker_id, jobs.c.started_at, jobs.c.finished_at
        ).where(jobs.c.id == job_id, jobs.c.state == ON_JOB_ROW_STATE.value)
        with self._errors(), self.read() as conn:
            found = [
                AttemptRecord(
                    id=r.id,
                    job_id=r.job_id,
                    attempt=r.attempt,
                    outcome=read_outcome(r.outcome),
                    lease=r.lease,
                    worker_id=r.worker_id,
                    started_at=r.started_at,
                    finished_at=r.finished_at,
                    error_type=r.error_type,
                    error_message=r.error_message,
                    traceback=r.traceback,
                    rule=r.rule,
                )
                for r in conn.execute(query)
            ]
            job = conn.execute(kept).first()
        # (A database written before attempts were kept on the job row has a row for it.)
        if job is not None and not any(a.outcome is ON_JOB_ROW for a in found):
            assert job.finished_at is not None
            found.append(
                AttemptRecord(
                    id=None,
                    job_id=job.id,
                    attempt=job.attempts,
                    outcome=ON_JOB_ROW,
                    lease=None,
                    worker_id=job.worker_id,
                    started_at=job.started_at,
                    finished_at=job.finished_at,
                    error_type=None,
                    error_message=None,
                    traceback=None,
                )
            )
        return found

    def job_next_run_at(
        self, queues: Sequence[str], names: claims.Names | None = None
    ) -> datetime | None:
        """When the earliest waiting job (of the names ``names`` lets through, if given)
        becomes ready (None when nothing waits)."""
        params = {} if names is None else {"n_names": list(names.names)}
        if self._driver is not None:
            # An idle worker asks after each claim that found too few jobs, while the child
            # starts the ones it found: compiled once per queue list and name filter (and
            # prepared by psycopg), it costs the worker and the server less CPU then than
            # building, compiling and planning the statement each time.
            key = (tuple(queues), None if names is None else names.among)
            compiled = self._compiled_in(
                self._driver_next_run, key, lambda: _next_run_at(*key, postgresql=True)
            )
            with self._errors():
                value = self._driver_run(compiled, params)[0][0]
        else:
            among = None if names is None else names.among
            with self._errors(), self.read() as conn:
                query = _next_run_at(queues, among, postgresql=self.is_postgresql)
                value = conn.execute(query, params).scalar()
        if value is None:
            return None
        return schema.UTCDateTime().process_result_value(value, self.engine.dialect)

    def job_count_many(self) -> list[tuple[str, JobState, int]]:
        """(queue, state, count) for every queue and state that has jobs."""
        query = (
            sa.select(jobs.c.queue, jobs.c.state, sa.func.count())
            .group_by(jobs.c.queue, jobs.c.state)
            .order_by(jobs.c.queue, jobs.c.state)
        )
        with self._errors(), self.read() as conn:
            return [(q, read_state(s), int(n)) for q, s, n in conn.execute(query)]


def _next_run_at(queues: Sequence[str], among: bool | None, *, postgresql: bool) -> sa.Select[Any]:
    """The earliest run_at of the waiting jobs of ``queues`` (none: every queue) whose names
    the parameter ``n_names`` lets through (``among``: only those, else all but those; None:
    any name)."""
    query = sa.select(sa.func.min(jobs.c.run_at)).where(jobs.c.state == JobState.REQUESTED.value)
    if queues:
        query = query.where(jobs.c.queue.in_(list(queues)))
    if among is not None:
        query = query.where(flow_sql.name_clause("n_names", among=among, postgresql=postgresql))
    return query
