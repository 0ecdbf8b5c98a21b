"""What the store's modules share: the jobs table's rows to and from records, the job
filter's WHERE clauses, and the channel enqueues notify."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from corequeue.core.display import search_patterns
from corequeue.core.states import UNKNOWN_OUTCOME, UNKNOWN_STATE, JobState, Outcome
from corequeue.store import schema
from corequeue.store.records import AttemptEnd, JobFilter, JobRecord, NewJob

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from typing_extensions import TypeIs

jobs, attempts, workers = schema.jobs, schema.attempts, schema.workers

#: PostgreSQL channel that enqueues notify; its payload is the queue name.
NOTIFY_CHANNEL = "corequeue_jobs"

#: A connection or session a caller passes in to write inside its own transaction.
ConnectionLike: TypeAlias = "Connection | Session"


def is_session(connection: object) -> TypeIs[Session]:
    """Whether ``connection`` is an ORM Session. The store does not import the ORM (a worker
    has no use for it, and it is slow to import): an application that made a Session has."""
    orm = sys.modules.get("sqlalchemy.orm")
    return orm is not None and isinstance(connection, orm.Session)


JOB_COLUMNS = [c for c in jobs.c]

log = logging.getLogger("corequeue.store")
_reported: set[tuple[str, str]] = set()


def read_state(text: str) -> JobState:
    """A stored state; UNKNOWN_STATE (logged once per value) for one this code does not know,
    so one odd row does not take every list and count down."""
    try:
        return JobState(text)
    except ValueError:
        _report("state", text)
        return UNKNOWN_STATE


def read_outcome(text: str) -> Outcome:
    """A stored attempt outcome; UNKNOWN_OUTCOME (logged once per value) when unknown."""
    try:
        return Outcome(text)
    except ValueError:
        _report("outcome", text)
        return UNKNOWN_OUTCOME


def _report(what: str, text: str) -> None:
    if (what, text) not in _reported and len(_reported) < 100:
        _reported.add((what, text))
        log.warning(
            "a row has the %s %r, which this version of corequeue does not know: shown as "
            "unknown (upgrade corequeue if a newer version wrote it, else fix the row)",
            what,
            text,
        )


def new_row(job: NewJob, now: datetime) -> dict[str, Any]:
    """The jobs row of a job being enqueued."""
    return {
        "name": job.name,
        "queue": job.queue,
        "priority": job.priority,
        "state": JobState.REQUESTED.value,
        "params": job.params,
        "run_at": job.run_at,
        "created_at": now,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "unique_key": job.unique_key,
        "unique_hold": job.unique_key,
        "unique_until": job.unique_until if job.unique_key else "",
        "source": job.source[:500],
        "concurrency_key": job.concurrency_key,
        "rate_key": job.rate_key,
        "headers": job.headers or None,
    }


def error_line(end: AttemptEnd) -> str | None:
    """The one-line error a job row keeps of its last attempt (None for a success)."""
    if end.outcome is Outcome.SUCCEEDED:
        return None
    if end.error_type is None and end.error_message is None:
        return end.outcome.value
    return f"{end.error_type or end.outcome.value}: {end.error_message or ''}".rstrip(": ")


def attempt_row(end: AttemptEnd) -> dict[str, Any]:
    """The attempts row of an ending."""
    return {
        "job_id": end.job_id,
        "attempt": end.attempt,
        "outcome": end.outcome.value,
        "lease": end.lease,
        "worker_id": end.worker_id,
        "started_at": end.started_at,
        "finished_at": end.finished_at,
        "error_type": end.error_type,
        "error_message": end.error_message,
        "traceback": end.traceback,
        "rule": end.rule,
    }


def job_record(row: Any) -> JobRecord:
    """A jobs row (all of :data:`JOB_COLUMNS`) as a record."""
    return JobRecord(
        id=row.id,
        name=row.name,
        queue=row.queue,
        priority=row.priority,
        state=read_state(row.state),
        params=row.params,
        run_at=row.run_at,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        timeout=row.timeout,
        unique_key=row.unique_key,
        lease=row.lease,
        worker_id=row.worker_id,
        result=row.result,
        error=row.error,
        source=row.source,
        unique_until=row.unique_until,
    )


def filter_clauses(
    f: JobFilter, *, window: tuple[int, int] | None = None
) -> list[ColumnElement[bool]]:
    """The WHERE clauses that select the jobs ``f`` describes. ``window``: (low, high), the
    ids ``low <= id < high`` that a search's substring matches (``search``, ``param``) are
    looked for among; an id that ``search`` names is found wherever it is."""
    clauses: list[ColumnElement[bool]] = []
    if f.states:
        clauses.append(jobs.c.state.in_([s.value for s in f.states]))
    if f.queues:
        clauses.append(jobs.c.queue.in_(list(f.queues)))
    if f.names:
        clauses.append(jobs.c.name.in_(list(f.names)))
    if f.created_after is not None:
        clauses.append(jobs.c.created_at >= f.created_after)
    if f.created_before is not None:
        clauses.append(jobs.c.created_at < f.created_before)
    within: list[ColumnElement[bool]] = []
    if window is not None:
        within = [jobs.c.id >= window[0], jobs.c.id < window[1]]
    if f.search:
        term = f.search.strip()
        found = sa.and_(
            *within,
            sa.or_(
                jobs.c.unique_key.contains(term, autoescape=True),
                jobs.c.name.contains(term, autoescape=True),
            ),
        )
        if term.isascii() and term.isdigit() and len(term) < 19:  # "²" is a digit; ids are bigint
            found = sa.or_(jobs.c.id == int(term), found)
        clauses.append(found)
    if f.param:
        patterns = search_patterns(f.param)
        options = [jobs.c.params.contains(p, autoescape=True) for p in patterns]
        common = _common_part(patterns)
        if common and len(options) > 1:  # one cheap test rules most rows out first
            within.append(jobs.c.params.contains(common, autoescape=True))
        clauses.append(sa.and_(*within, sa.or_(*options)) if options else sa.false())
    return clauses


def _common_part(patterns: list[str]) -> str:
    """A substring of every one of ``patterns`` ('' when none is found): the shortest one,
    or it without its first or last character, or both."""
    if not patterns:
        return ""
    shortest = min(patterns, key=len)
    for part in (shortest, shortest[1:], shortest[:-1], shortest[1:-1]):
        if part and all(part in p for p in patterns):
            return part
    return ""
