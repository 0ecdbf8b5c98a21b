"""A job's own transaction: ``corequeue.current_job().transaction()``.

One per attempt, opened when the job first asks for it, on a connection of this process's
store (a worker's child opens its own, after the fork: nothing is inherited). It is not
committed when the ``with`` block ends: it stays open until the job's ``run()`` returns, and
then the attempt's success is recorded on it (the core's ending, written by the store's one
ending writer: a compare-and-set on the job's lease) and it commits, the job's writes and its
success together. Anything else rolls it back: ``run()`` raising, a timeout or a cancel (the
child cancels an async job, or the worker kills the child, and the database rolls back what
a dead connection left open), a lease lost to a rescue (the compare-and-set finds nothing to
update), an exception leaving the ``with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from corequeue import runtime
from corequeue.core import lifecycle
from corequeue.core.lifecycle import JobSnapshot
from corequeue.core.params import decode_params
from corequeue.core.states import JobState, Outcome
from corequeue.store import orm
from corequeue.store.driver import as_datetime
from corequeue.store.records import AttemptEnd

if TYPE_CHECKING:
    from corequeue.context import JobContext
    from corequeue.executor.task import Task


_LOCK = threading.Lock()  # an attempt's transaction opening in one thread, ending in another
_OVER = (
    "current_job().transaction() was entered after its attempt ended: enter it inside run(), "
    "not from a thread or task that outlives the job"
)


class CurrentAttempt:
    """The attempt of a task being run: what ``corequeue.current_job()`` stands for while it
    runs (its context is built only when asked for), its transaction if the job opens one, and
    the session its ORM parameters load in when the application configured a session factory.
    ``row``: the job has a row to record its success on (False inline: no database row)."""

    __slots__ = ("conn", "done", "orm", "row", "task")

    def __init__(self, task: Task, *, row: bool = True) -> None:
        self.task = task
        self.row = row
        self.conn: Connection | None = None
        self.done = False  # the attempt is over: no transaction may open any more
        self.orm = runtime.attempt_session()

    def decode(self, params: str, codecs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The job's arguments; ORM instances load in the attempt's session, if any."""
        if self.orm is None:
            return decode_params(params, codecs=codecs)
        with orm.loading_in(self.orm):
            return decode_params(params, codecs=codecs)

    def context(self) -> JobContext:
        return self.task.context()

    def transaction(self) -> JobTransaction:
        return JobTransaction(self)

    def open(self) -> Connection:
        """The attempt's transaction, begun now if none is open. Raises RuntimeError once
        the attempt is over (a thread of the job that outlived it)."""
        with _LOCK:
            if self.conn is not None:
                return self.conn
            if self.done:
                raise RuntimeError(_OVER)
        conn = runtime.get_store().job_transaction()
        with _LOCK:
            mine = not self.done and self.conn is None
            if mine:
                self.conn = conn
        if mine:
            if self.orm is not None:
                self.orm.join(conn)
            return conn
        _close(conn)  # the attempt ended (or another thread opened one) while this one began
        if self.done:
            raise RuntimeError(_OVER)
        return self.open()

    def take(self, *, end: bool = False) -> Connection | None:
        """Let go of the open transaction (None: none is open) and give it to the caller,
        who commits or closes it; ``end``: the attempt is over (no transaction opens after)."""
        with _LOCK:
            conn, self.conn = self.conn, None
            self.done = self.done or end
        return conn

    def rollback(self, *, end: bool = False) -> None:
        """End the open transaction, if any, writing nothing (``end``: see :meth:`take`)."""
        if self.conn is None and (self.done or not end):
            return
        conn = self.take(end=end)
        if self.orm is not None:
            self.orm.leave()
        if conn is not None:
            _close(conn)

    def end(self) -> None:
        """The attempt is over: roll back what did not commit, close its ORM session."""
        self.rollback(end=True)
        if self.orm is not None:
            self.orm.close()

    def flush(self) -> None:
        """Before the commit: what the job changed in its ORM instances goes into it."""
        if self.orm is not None:
            self.orm.flush()

    def success(self, result: str | None, duration: float) -> AttemptEnd:
        """The ending of a successful attempt, as the core decides it (finished now)."""
        t = self.task
        now = datetime.now(UTC)
        snapshot = JobSnapshot(
            JobState.RUNNING,
            t.attempt,
            t.max_attempts,
            t.lease,
            as_datetime(t.run_at),  # microseconds as it crossed the pipe (Task.wire)
            t.worker_losses,
            t.deferrals,
        )
        change = lifecycle.finish(snapshot, Outcome.SUCCEEDED, lease=t.lease, now=now)
        return AttemptEnd(
            t.job_id,
            t.lease,
            t.attempt,
            Outcome.SUCCEEDED,
            change,
            t.worker_id,
            now - timedelta(seconds=duration),  # started_at
            now,
            result,
        )


def commit(conn: Connection, end: AttemptEnd | None, flush: Callable[[], None]) -> str | None:
    """Flush the attempt's ORM session (``flush``), record ``end`` (None: nothing to record,
    inline) on ``conn`` and commit; the connection is closed either way. Returns None when
    committed, else why not (rolled back)."""
    try:
        flush()
        if end is not None and not runtime.get_store().job_finish_in(conn, end):
            return (
                "the job no longer ran under this attempt's lease when it finished (rescued "
                "as lost, cancelled or deleted meanwhile): its transaction was rolled back"
            )
        conn.commit()
        return None
    except Exception as exc:
        return f"its transaction could not commit ({type(exc).__name__}: {exc}): rolled back"
    finally:
        _close(conn)


class JobTransaction:
    """What ``JobContext.transaction()`` returns: ``with`` it (a sync job) or ``async with``
    it (an async job) for the attempt's connection. Entering it again in the same attempt
    gives the same transaction; an exception leaving the block rolls it back (a later
    ``transaction()`` starts a new one). An async job gets the same (synchronous)
    Connection: beginning, committing and rolling back run in a thread, so waiting for a lock
    never blocks the event loop; the statements the job runs on it are synchronous calls."""

    __slots__ = ("attempt",)

    def __init__(self, attempt: CurrentAttempt) -> None:
        self.attempt = attempt

    def __enter__(self) -> Connection:
        return self.attempt.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.attempt.rollback()

    async def __aenter__(self) -> Connection:
        return await asyncio.to_thread(self.attempt.open)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            await asyncio.to_thread(self.attempt.rollback)


def _close(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # a dead connection has nothing to undo
        conn.close()
