"""The running job's context: ``corequeue.current_job()``.

Held in a :class:`contextvars.ContextVar`, set around each attempt (in the worker's child and
inline), so it is right in threads and in async jobs each awaited in its own task, and None
outside a job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from corequeue.executor.transaction import JobTransaction


@runtime_checkable
class HasTransaction(Protocol):
    """The running attempt: it holds the job's transaction (corequeue.executor.transaction)."""

    def transaction(self) -> JobTransaction: ...


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

    def transaction(self) -> JobTransaction:
        """The attempt's own transaction: ``with ctx.transaction() as conn:`` (``async with``
        in an async job) gives a SQLAlchemy Connection on corequeue's database whose writes
        commit together with the attempt's success, once ``run()`` has returned, or not at
        all (``run()`` raises or defers, the attempt times out, is cancelled or loses its
        lease). Pass it to ``run_in_worker(connection=conn)``, or bind an ORM Session to it.
        Raises RuntimeError outside a running attempt (in a thread the job started, too:
        threads do not inherit the job's context)."""
        running = _CURRENT.get()
        if isinstance(running, JobContext) or not isinstance(running, HasTransaction):
            raise RuntimeError(
                "no attempt of this job is running here: call transaction() on "
                "corequeue.current_job() inside the job's run()"
            )
        return running.transaction()


class HasContext(Protocol):
    """What knows its job's context (the worker's task): the context is built only when
    someone asks for it, not once per attempt."""

    def context(self) -> JobContext: ...


Current = JobContext | HasContext | None

_CURRENT: ContextVar[Current] = ContextVar("corequeue_current_job", default=None)


def current_job() -> JobContext | None:
    """The context of the job running here, or None outside a job."""
    value = _CURRENT.get()
    if value is None or isinstance(value, JobContext):
        return value
    return value.context()


def enter(current: Current) -> Token[Current]:
    """Make ``current`` the current job's; give the token back to :func:`leave`."""
    return _CURRENT.set(current)


def leave(token: Token[Current]) -> None:
    """Restore the current job as it was before :func:`enter`."""
    _CURRENT.reset(token)


@contextmanager
def running(context: JobContext | None) -> Iterator[None]:
    """Make ``context`` the current job's for the duration of the block."""
    token = enter(context)
    try:
        yield
    finally:
        leave(token)
