"""Inline mode: enqueued jobs run at once, in the test's process, without a database.

What happens to each job enqueued while :class:`InlineJobs` is active:

- Its parameters make the real round trip: encoded to JSON at enqueue (so a parameter the
  database cannot store is refused, as in production), then decoded again and the job class
  resolved by its registry name (so a parameter the worker could not decode fails too).
- It runs through the configured job middleware (or ``InlineJobs.middleware``), exactly as a
  worker's child process runs it, and its return value is encoded to JSON and decoded again:
  ``handle.result`` is what ``handle.wait()`` would return in production.
- An exception raised by ``run()`` propagates to the test, out of ``run_in_worker()`` or
  ``enqueue_many()``, once the job's attempts are used up. Set ``raise_errors = False`` to
  record it instead: the handle is then ``failed`` and ``handle.error`` holds the exception.
- Retries are attempted at once, up to the job's limit (``retries=``): the retry delay is
  computed and recorded in ``handle.delays`` but not waited for.
- ``connection=`` (a SQLAlchemy Connection or Session): the job runs once that transaction
  has committed (its outermost commit; see :mod:`corequeue.store.commit`), never after a
  rollback, as a worker would only ever see it then. Without it, the job runs at once.
- ``delay=`` is honoured: a job whose run time is in the future waits (``handle.state`` is
  ``requested``) until :meth:`InlineJobs.drain` reaches its run time (``drain(until=...)``
  travels in time: nothing waits for the clock). The job sees ``current_job().run_at`` as
  scheduled.
- ``raise DeferJob(...)`` runs the job again at once (the delay is recorded in
  ``handle.delays``, not waited for), up to ``max_deferrals`` times (default 3). After that the
  job is left waiting: ``handle.state`` is ``requested``, as it would be in the database.
  With ``increment_retries=True`` each deferral uses an attempt, and the job fails once its
  attempts run out (raising JobFailed unless ``raise_errors`` is False).
- ``timeout=`` is not enforced (nothing can stop a job running in the test's own thread) and
  ``unique_key=`` is moot (each job has finished before the next enqueue).
- ``job_enqueued`` hooks fire when the job is accepted (at the commit, with ``connection=``),
  before it runs.
- A job that enqueues other jobs runs them inline too, at once, inside its own ``run()``.
- In an async test (a running event loop in the test's thread), an async job runs to
  completion in an event loop of its own on another thread, and its exception reaches the test.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from corequeue import hooks, runtime
from corequeue.core import claims, lifecycle
from corequeue.core.errors import JobFailed, JobParamsError
from corequeue.core.lifecycle import JobSnapshot
from corequeue.core.params import decode_value
from corequeue.core.states import JobState, Outcome
from corequeue.executor.task import Task, TaskResult, run_task
from corequeue.jobs import Job, JobHandle, PreparedJob
from corequeue.middleware import RunJob, build_chain
from corequeue.store.commit import after_commit
from corequeue.store.queries import ConnectionLike
from corequeue.store.records import NewJob

_ids = itertools.count(1)


class InlineHandle(JobHandle):
    """The handle of a job that ran inline: its state and result are known at once.

    ``attempts`` counts the attempts run, ``delays`` lists the seconds the job would have
    waited (retries and deferrals), ``error`` is the last exception ``run()`` raised (None
    when it succeeded) and ``job`` the instance that ran (built from decoded parameters).
    """

    def __init__(self, row: NewJob) -> None:
        super().__init__(next(_ids), state=JobState.REQUESTED)
        self.name = row.name
        self.queue = row.queue
        self.priority = row.priority
        self.run_at = row.run_at
        self.params = row.params
        self.max_attempts = row.max_attempts
        self.source = row.source
        self.enqueued_at = _now()
        self.attempts = 0
        self.delays: list[float] = []
        self.outcomes: list[Outcome] = []
        self.error: BaseException | None = None
        self.error_message: str | None = None
        self.traceback: str | None = None
        self.job: Job | None = None
        self._result: str | None = None

    def task(self, lease: str, attempt: int) -> Task:
        """What the inline executor runs for attempt ``attempt`` under ``lease``."""
        return Task(
            self.id,
            lease,
            self.name,
            self.params,
            attempt,
            None,
            self.queue,
            self.priority,
            self.max_attempts,
            self.enqueued_at,
            self.run_at,
            "",
            self.source,
        )

    def refresh(self) -> InlineHandle:
        """Nothing to read again: an inline job's state is known. Returns self."""
        return self

    @property
    def result(self) -> Any:
        """The job's return value after its JSON round trip (None unless succeeded)."""
        return None if self._result is None else decode_value(self._result, codecs=runtime.codecs())

    def wait(self, timeout: float | None = None, *, poll: float = 0.02) -> Any:
        """The result at once. Raises JobFailed when the job failed or was left waiting."""
        if self.state is JobState.SUCCEEDED:
            return self.result
        if self.state is JobState.REQUESTED and not self.attempts:
            raise JobFailed(
                f"inline job {self.id} ({self.name}) has not run: it waits for "
                f"{self.run_at.isoformat()} (run_jobs_inline.drain(until=...) runs it), or for "
                "the commit of the transaction it was enqueued in"
            )
        if self.state is JobState.REQUESTED:
            raise JobFailed(
                f"inline job {self.id} ({self.name}) is still waiting after "
                f"{len(self.delays)} deferral(s): it would never finish in this test"
            )
        raise JobFailed(
            f"inline job {self.id} ({self.name}) {self.state.value}: {self.error_message}"
        )

    def __repr__(self) -> str:
        return f"<InlineHandle id={self.id} {self.name} state={self.state.value}>"


class InlineJobs:
    """Runs enqueued jobs at once, in-process (see the module docstring for the rules).

    Use as a context manager or through the ``run_jobs_inline`` fixture. ``handles`` lists
    every job accepted (run, or waiting for its run time: ``waiting``), in order.
    """

    def __init__(
        self,
        *,
        raise_errors: bool = True,
        middleware: Sequence[str] | None = None,
        max_deferrals: int = 3,
    ) -> None:
        self.raise_errors = raise_errors
        self.middleware = middleware
        self.max_deferrals = max_deferrals
        self.handles: list[InlineHandle] = []
        self._delayed: list[tuple[InlineHandle, RunJob]] = []
        self._remove: Callable[[], None] | None = None

    def start(self) -> None:
        if self._remove is None:
            self._remove = runtime.add_interceptor(self._intercept)

    def stop(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    def __enter__(self) -> InlineJobs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def failed(self) -> list[InlineHandle]:
        """Handles of the jobs that failed (useful with ``raise_errors = False``)."""
        return [h for h in self.handles if h.state is JobState.FAILED]

    @property
    def waiting(self) -> list[InlineHandle]:
        """Handles of the accepted jobs waiting for a later run time (``drain(until=...)``)."""
        return [handle for handle, _ in self._delayed]

    def drain(self, *, until: datetime | timedelta | None = None) -> list[InlineHandle]:
        """Run the waiting jobs whose run time is at or before ``until`` (an aware datetime,
        or a timedelta from now; default now), in the order a worker would claim them, jobs
        they enqueue included. Nothing waits for the clock. Returns the handles run."""
        moment = until_moment(until)
        ran: list[InlineHandle] = []
        while True:
            due = [
                (h, c)
                for h, c in self._delayed
                if claims.is_ready(h.state, h.run_at, h.queue, now=moment, queues=())
            ]
            if not due:
                return ran
            handle, chain = min(due, key=lambda entry: claims.claim_key(entry[0]))
            self._delayed.remove((handle, chain))
            ran.append(handle)
            self._run(handle, chain)

    def _chain(self) -> RunJob:
        paths = runtime.configured_middleware() if self.middleware is None else self.middleware
        return build_chain(paths)

    def _intercept(
        self, prepared: Sequence[PreparedJob], connection: ConnectionLike | None
    ) -> list[JobHandle]:
        chain = self._chain()
        accepted = [InlineHandle(p.row) for p in prepared]
        after_commit(connection, lambda: self._accept(accepted, chain))
        return list[JobHandle](accepted)

    def _accept(self, accepted: Sequence[InlineHandle], chain: RunJob) -> None:
        """The enqueue is committed: announce each job, run it unless its time is to come."""
        self.handles += accepted
        for handle in accepted:
            hooks.fire(hooks.enqueued(handle.id, handle, handle.enqueued_at))
        now = _now()
        for handle in accepted:
            if claims.is_ready(handle.state, handle.run_at, handle.queue, now=now, queues=()):
                self._run(handle, chain)
            else:
                self._delayed.append((handle, chain))

    def _run(self, handle: InlineHandle, chain: RunJob) -> None:
        snapshot = JobSnapshot(JobState.REQUESTED, 0, handle.max_attempts, None, handle.run_at)
        deferrals = 0
        while True:
            lease = f"inline-{handle.id}-{snapshot.attempts + 1}"
            change = lifecycle.claim(snapshot, lease=lease, now=_now())
            snapshot = change.snapshot()
            raised: list[BaseException] = []

            def recording(job: Job, raised: list[BaseException] = raised) -> Any:
                handle.job = job
                try:
                    value = chain(job)
                except BaseException as exc:
                    raised.append(exc)
                    raise
                if not inspect.isawaitable(value):
                    return value
                # An async job: run_task awaits it to completion; its exception is kept too.
                if _loop_running():  # an async test: asyncio.run cannot run in this thread
                    return _in_thread(_recorded(value, raised))
                return _recorded(value, raised)

            task = handle.task(lease, snapshot.attempts)
            # row=False: no job row here; a transaction() the job opens commits on its success.
            result = run_task(task, recording, codecs=runtime.codecs(), row=False)
            # None: the attempt did not raise (an inline attempt is never lost nor timed out).
            retry_delay = 0.0 if result.retry_delay is None else result.retry_delay
            change = lifecycle.finish(
                snapshot,
                result.outcome,
                lease=lease,
                now=_now(),
                retry_delay=retry_delay,
                defer_delay=result.defer_delay,
                defer_counts=result.defer_counts,
                retryable=not result.no_retry,
            )
            snapshot = change.snapshot()
            handle.attempts = change.attempts
            handle.outcomes.append(result.outcome)
            handle.state = change.state
            self._record(handle, result, raised)
            if change.state is JobState.SUCCEEDED:
                handle._result = result.result
                return
            if change.state is JobState.FAILED:
                if self.raise_errors:
                    self._raise(handle, result)
                return
            # Back to waiting: a retry, or a deferral.
            if result.outcome is Outcome.DEFERRED:
                handle.delays.append(result.defer_delay)
                deferrals += 1
                if deferrals > self.max_deferrals:
                    return  # left waiting, as it would be in the database
            else:
                handle.delays.append(retry_delay)

    @staticmethod
    def _record(handle: InlineHandle, result: TaskResult, raised: Sequence[BaseException]) -> None:
        if result.outcome is Outcome.SUCCEEDED:
            handle.error = handle.error_message = handle.traceback = None
            return
        handle.error = raised[-1] if raised else None
        handle.error_message = result.error_message
        handle.traceback = result.traceback

    @staticmethod
    def _raise(handle: InlineHandle, result: TaskResult) -> None:
        if handle.error is not None:
            raise handle.error
        if result.outcome is Outcome.DEFERRED:
            raise JobFailed(
                f"inline job {handle.name} failed: it deferred itself with "
                f"increment_retries=True until its {handle.max_attempts} attempt(s) ran out"
            )
        if result.error_type and result.error_type.endswith("JobParamsError"):
            raise JobParamsError(result.error_message)
        raise JobFailed(
            f"inline job {handle.name} failed: {result.error_type}: {result.error_message}"
        )


async def _recorded(awaitable: Awaitable[Any], raised: list[BaseException]) -> Any:
    try:
        return await awaitable
    except BaseException as exc:
        raised.append(exc)
        raise


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_thread(awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable`` in an event loop of its own on another thread, with this context
    (``current_job()``); blocks until done. Returns its value or raises its exception."""
    context = contextvars.copy_context()
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, context.run(asyncio.run, _awaited(awaitable))))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="corequeue-inline-async", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def until_moment(until: datetime | timedelta | None) -> datetime:
    """``until`` as an aware datetime (a timedelta counts from now). Raises ValueError for a
    naive datetime."""
    if until is None:
        return _now()
    if isinstance(until, timedelta):
        return _now() + until
    if until.tzinfo is None:
        raise ValueError(
            f"until={until!r} is a naive datetime: give an aware one (tzinfo=UTC) or a timedelta"
        )
    return until


def _now() -> datetime:
    return datetime.now(UTC)
