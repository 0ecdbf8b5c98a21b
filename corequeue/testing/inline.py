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
- ``delay=`` is not waited for: the job runs at once; the requested time is ``handle.run_at``.
- ``raise DeferJob(...)`` runs the job again at once (the delay is recorded in
  ``handle.delays``, not waited for), up to ``max_deferrals`` times (default 3). After that the
  job is left waiting: ``handle.state`` is ``requested``, as it would be in the database.
  With ``increment_retries=True`` each deferral uses an attempt, and the job fails once its
  attempts run out (raising JobFailed unless ``raise_errors`` is False).
- ``timeout=`` is not enforced (nothing can stop a job running in the test's own thread),
  ``unique_key=`` is moot (each job has finished before the next enqueue), and
  ``connection=`` is ignored: the job runs even if that transaction later rolls back.
- A job that enqueues other jobs runs them inline too, at once, inside its own ``run()``.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from corequeue import runtime
from corequeue.core import lifecycle
from corequeue.core.errors import JobFailed, JobParamsError
from corequeue.core.lifecycle import JobSnapshot
from corequeue.core.params import decode_value
from corequeue.core.states import JobState, Outcome
from corequeue.executor.task import Task, TaskResult, run_task
from corequeue.jobs import Job, JobHandle, PreparedJob
from corequeue.middleware import RunJob, build_chain
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
    every job run, in order.
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

    def _chain(self) -> RunJob:
        paths = runtime.configured_middleware() if self.middleware is None else self.middleware
        return build_chain(paths)

    def _intercept(
        self, prepared: Sequence[PreparedJob], connection: ConnectionLike | None
    ) -> list[JobHandle]:
        chain = self._chain()
        out: list[JobHandle] = []
        for p in prepared:
            handle = InlineHandle(p.row)
            self.handles.append(handle)
            out.append(handle)
            self._run(handle, chain)
        return out

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
                # An async job: run_task awaits it to completion; its exception is kept too.
                return _recorded(value, raised) if inspect.isawaitable(value) else value

            task = handle.task(lease, snapshot.attempts)
            result = run_task(task, recording, codecs=runtime.codecs())
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


def _now() -> datetime:
    return datetime.now(UTC)
