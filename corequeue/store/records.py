"""Plain records that cross the store boundary (no SQLAlchemy types leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from corequeue.core import uniqueness
from corequeue.core.lifecycle import Change, JobSnapshot
from corequeue.core.states import JobState, Outcome


def record_dict(record: Any) -> dict[str, Any]:
    """A record as JSON-ready data: datetimes as ISO 8601 text."""
    out = {}
    for f in fields(record):
        value = getattr(record, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


@dataclass(frozen=True, slots=True)
class NewJob:
    name: str
    params: str  # encoded JSON
    queue: str
    priority: int
    run_at: datetime
    max_attempts: int
    timeout: float | None
    unique_key: str
    source: str
    #: Flow control (corequeue.core.limits): the slot keys of the job's own limits ('' for
    #: none), its concurrency limit and its rate (count, period in seconds).
    concurrency_key: str = ""
    rate_key: str = ""
    concurrency_limit: int | None = None
    rate_limit: tuple[int, float] | None = None
    #: Uniqueness (corequeue.core.uniqueness): the policy's canonical text, and what an
    #: enqueue does when the key is held.
    unique_until: str = uniqueness.DEFAULT_UNTIL
    on_conflict: uniqueness.OnConflict = uniqueness.OnConflict.KEEP
    #: A JSON object of strings ('' for none): the enqueue's trace context (corequeue.otel).
    headers: str = ""


@dataclass(frozen=True, slots=True)
class Inserted:
    id: int
    inserted: bool  # False: a job holding the same unique key was kept (or took the arguments)


# ClaimedJob and AttemptEnd are built once per job on the worker's hot path: not frozen,
# because a frozen dataclass's __init__ costs three times as much (treat them as read-only).
@dataclass(slots=True)
class ClaimedJob:
    """A job this worker now runs under ``lease``."""

    id: int
    name: str
    params: str
    queue: str
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    timeout: float | None
    lease: str
    started_at: datetime
    worker_losses: int = 0
    deferrals: int = 0
    created_at: datetime | None = None  # when it was enqueued
    source: str = ""  # where it was enqueued (file:line), for corequeue.current_job()
    headers: str | None = None  # its enqueue's trace context (a JSON object), if any
    gates: tuple[str, ...] = ()  # runs after the jobs claimed before it with a gate in common

    def snapshot(self) -> JobSnapshot:
        # _make: a third of the named tuple's constructor, once per finished job.
        return JobSnapshot._make(
            (
                JobState.RUNNING,
                self.attempts,
                self.max_attempts,
                self.lease,
                self.run_at,
                self.worker_losses,
                self.deferrals,
            )
        )


@dataclass(slots=True)
class AttemptEnd:
    """How one attempt ended, and the change the core decided for its job."""

    job_id: int
    lease: str
    attempt: int
    outcome: Outcome
    change: Change
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime
    result: str | None = None  # encoded JSON, when succeeded
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    name: str = ""  # for logs
    queue: str = ""
    priority: int = 0  # for logs, too
    source: str = ""  # where the job was enqueued (file:line)
    run_at: datetime | None = None  # the log line's waited_ms: from run_at to started_at
    pid: int | None = None  # the child process that reported the ending, when one did
    enqueued_at: datetime | None = None  # the job's created_at (for hooks' job context)
    #: The retry rule that applied (corequeue.core.policy.Rule's value), when one did.
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: int
    name: str
    queue: str
    priority: int
    state: JobState
    params: str
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    max_attempts: int
    timeout: float | None
    unique_key: str
    lease: str | None
    worker_id: str | None
    result: str | None
    error: str | None
    source: str
    #: The unique key's policy ("started", "finished", a period; "" without a key).
    unique_until: str = ""

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(self.state, self.attempts, self.max_attempts, self.lease, self.run_at)

    def as_dict(self) -> dict[str, Any]:
        return record_dict(self)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of a job. A successful attempt is kept on its job's row, not as an attempt
    row of its own (``queries.ON_JOB_ROW``): ``id`` and ``lease`` are None for it."""

    id: int | None
    job_id: int
    attempt: int
    outcome: Outcome
    lease: str | None
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime
    error_type: str | None
    error_message: str | None
    traceback: str | None
    #: The retry rule its ending applied (corequeue.core.policy.Rule's value: "discard_on",
    #: "retry_on", "should_retry", "retries_exhausted", ...), None when none did.
    rule: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return record_dict(self)


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    id: str
    host: str
    pid: int
    queues: list[str]
    started_at: datetime
    last_beat_at: datetime
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What ``job_list`` selects; every field optional."""

    states: tuple[JobState, ...] = ()
    queues: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    search: str = ""  # an id, or a substring of the unique key or name
    param: str = ""  # a parameter's value: 7, alice@example.com, Order#12 (core.display)
    created_after: datetime | None = None
    created_before: datetime | None = None
