"""The running job's context: ``corequeue.current_job()``.

Held in a :class:`contextvars.ContextVar`, set around each attempt (in the worker's child and
inline), so it is right in threads and in async jobs each awaited in its own task, and None
outside a job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job an attempt runs (read-only): its row's values as the attempt started."""

    id: int
    name: str
    queue: str
    priority: int
    attempt: int  # 1-based: this attempt's number
    max_attempts: int
    enqueued_at: datetime | None
    run_at: datetime | None  # when the job was due for this attempt
    worker_id: str  # "" inline
    source: str  # file:line where it was enqueued ("" when unknown)


_CURRENT: ContextVar[JobContext | None] = ContextVar("corequeue_current_job", default=None)


def current_job() -> JobContext | None:
    """The context of the job running here, or None outside a job."""
    return _CURRENT.get()


@contextmanager
def running(context: JobContext | None) -> Iterator[None]:
    """Make ``context`` the current job's for the duration of the block."""
    token = _CURRENT.set(context)
    try:
        yield
    finally:
        _CURRENT.reset(token)
