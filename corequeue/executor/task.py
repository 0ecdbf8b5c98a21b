"""Running one job: what the child process (or the inline executor) does with a task."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Generator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from corequeue import context as job_context
from corequeue import hooks, registry, tracing
from corequeue.backoff import retry_delay_for
from corequeue.context import JobContext
from corequeue.core import policy
from corequeue.core.delays import seconds_until
from corequeue.core.errors import JobParamsError, UnknownJobError
from corequeue.core.params import encode_value
from corequeue.core.policy import Verdict
from corequeue.core.states import Outcome
from corequeue.executor.transaction import CurrentAttempt, commit
from corequeue.jobs import DeferJob, Job
from corequeue.middleware import RunJob
from corequeue.store.driver import as_datetime, micros
from corequeue.store.records import ClaimedJob

if TYPE_CHECKING:
    from corequeue.otel import Attempt


class Task(NamedTuple):
    """What a child needs to run one attempt; it needs no database connection for it.

    (Named tuples: they cross the pipe to and from the children once per job, and pickle
    faster than dataclasses.)"""

    job_id: int
    lease: str
    name: str
    params: str
    attempt: int
    timeout: float | None
    # What corequeue.current_job() tells the job (the rest of its context is above).
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 1
    # Datetimes in the worker; in a child, microseconds since the epoch as they crossed the
    # pipe (:meth:`wire`), made datetimes again only if the job's context is asked for.
    enqueued_at: datetime | int | None = None
    run_at: datetime | int | None = None
    worker_id: str = ""
    source: str = ""
    headers: str = ""  # the enqueue's trace context (corequeue.tracing), '' for none
    # The rest of the job's row as claimed: its success is recorded from the child when the
    # job commits its own transaction (corequeue.executor.transaction).
    worker_losses: int = 0
    deferrals: int = 0
    gates: tuple[str, ...] = ()  # flow control: runs after earlier tasks with a gate in common

    @classmethod
    def of(cls, job: ClaimedJob, worker_id: str) -> Task:
        """The task of a job ``worker_id`` claimed."""
        return cls(
            job.id,
            job.lease,
            job.name,
            job.params,
            job.attempts,
            job.timeout,
            job.queue,
            job.priority,
            job.max_attempts,
            job.created_at,
            job.run_at,
            worker_id,
            job.source,
            job.headers or "",
            job.worker_losses,
            job.deferrals,
            job.gates,
        )

    def wire(self) -> tuple[Any, ...]:
        """A plain tuple for the pipe, its times as integer microseconds: pickling a datetime
        costs several times as much, once per job on both sides."""
        return (*self[:9], micros(self[9]), micros(self[10]), *self[11:])  # type: ignore[arg-type]

    def context(self) -> JobContext:
        """The job's context for ``corequeue.current_job()`` during this attempt."""
        return JobContext(
            self.job_id,
            self.name,
            self.queue,
            self.priority,
            self.attempt,
            self.max_attempts,
            as_datetime(self.enqueued_at),
            as_datetime(self.run_at),
            self.worker_id,
            self.source,
        )


class TaskResult(NamedTuple):
    """How an attempt ended, as the child saw it."""

    job_id: int
    lease: str
    outcome: Outcome
    duration: float  # seconds spent in the job
    result: str | None = None  # encoded JSON
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    #: Seconds before the retry, for an attempt that raised (see corequeue.backoff); None when
    #: the child did not decide it (nothing to retry, or the child could not ask the job: the
    #: worker resolves it for a lost, timed-out or cancelled attempt).
    retry_delay: float | None = None
    defer_delay: float = 0.0
    defer_counts: bool = False
    #: The job's name could not be resolved here (UnknownJobError): the worker requeues it
    #: without using an attempt (``lifecycle.unresolved``).
    unresolved: bool = False
    #: The child died on its own with several jobs in flight (which one killed it is not
    #: known): a ``lost`` attempt the worker does not count, but counts toward the crash loop.
    crash_shared: bool = False
    #: The retry policy refused a retry of this errored attempt (corequeue.core.policy): the
    #: job fails whatever attempts are left.
    no_retry: bool = False
    #: The retry-policy rule that judged this errored attempt's exception (a
    #: corequeue.core.policy.Rule value; None: no rule is set, the default retries apply).
    rule: str | None = None
    #: The success was recorded in the job's own transaction, with its writes
    #: (corequeue.executor.transaction): the worker records nothing more for this attempt.
    recorded: bool = False
    #: When the child saw the attempt end (epoch seconds): the attempt's recorded end, as its
    #: result may reach the worker later, together with the next ones.
    ended_at: float | None = None

    def wire(self) -> tuple[Any, ...]:
        """A plain tuple for the pipe: pickling builtins only is several times cheaper than a
        named tuple holding an enum, once per job on both sides."""
        return (self[0], self[1], self[2].value, *self[3:])

    @classmethod
    def from_wire(cls, fields: tuple[Any, ...]) -> TaskResult:
        return cls._make((fields[0], fields[1], _OUTCOMES[fields[2]], *fields[3:]))


_OUTCOMES = {o.value: o for o in Outcome}


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception's own ``__str__`` raises."""
    try:
        return str(exc)
    except Exception as broken:
        return (
            f"<the message of this {type(exc).__qualname__} could not be built: its __str__ "
            f"raised {type(broken).__qualname__}>"
        )


class Blocking(NamedTuple):
    """A blocking call the attempt needs made (its transaction's commit): made in place by
    :func:`run_task`, in a thread by :func:`run_task_async` (never on the event loop)."""

    call: Callable[[], Any]


def run_task(task: Task, chain: RunJob, *, codecs: Any = (), row: bool = True) -> TaskResult:
    """Run ``task`` through the middleware ``chain`` and say how it ended. Never raises
    (except for the process being killed): every failure becomes an ``errored`` result. An
    async job (its chain returns an awaitable) runs to completion in an event loop of its own
    (the inline runner, a sync path); the child awaits it instead (:func:`run_task_async`).
    ``row``: the job has a row on which its transaction records its success (False inline)."""
    attempt = _in_context(task, chain, codecs, row)
    try:
        step = next(attempt)
        while True:
            try:
                value = step.call() if isinstance(step, Blocking) else asyncio.run(_awaited(step))
            except BaseException as exc:
                step = attempt.throw(exc)
            else:
                step = attempt.send(value)
    except StopIteration as stop:
        result: TaskResult = stop.value
        return result


async def run_task_async(
    task: Task, chain: RunJob, *, codecs: Any = (), row: bool = True
) -> TaskResult:
    """:func:`run_task` for the child's event loop: the job's awaitable is awaited here.
    Cancelling this coroutine (a timeout, a cancel) raises CancelledError out of it, not a
    result: the caller says how the attempt ended."""
    attempt = _in_context(task, chain, codecs, row)
    try:
        step = next(attempt)
        while True:
            try:
                if isinstance(step, Blocking):
                    # Shielded: a commit under way finishes (or not) whatever happens to us.
                    value = await asyncio.shield(asyncio.to_thread(step.call))
                else:
                    value = await step
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    attempt.close()
                    raise
                step = attempt.throw(exc)
            except BaseException as exc:
                step = attempt.throw(exc)
            else:
                step = attempt.send(value)
    except StopIteration as stop:
        result: TaskResult = stop.value
        return result


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _in_context(
    task: Task, chain: RunJob, codecs: Any, row: bool
) -> Generator[Awaitable[Any] | Blocking, Any, TaskResult]:
    """:func:`_attempt` with the job's context current (``corequeue.current_job()``, for
    the job and its middleware), the ``job_started`` and ``job_finished`` hooks around it, and
    its consumer span when tracing (:mod:`corequeue.tracing`). The attempt stands for its
    context: the context is built only if something asks for it. A transaction the job left
    open did not commit with a success: it is rolled back."""
    attempt = CurrentAttempt(task, row=row)
    token = job_context.enter(attempt)
    span = tracing.attempt(task) if tracing.enabled() else None
    try:
        _fire("job_started", task)
        result = yield from _attempt(task, chain, codecs, attempt, span)
        attempt.end()
        _fire("job_finished", task, result)
    except GeneratorExit:  # stopped in its event loop: the child ends the span (_stopped)
        if span is not None:
            span.interrupted()
            span = None
        raise
    finally:
        attempt.end()
        if span is not None:
            span.leave()
        job_context.leave(token)
    if span is not None:
        span.end(result)
    return result


def _fire(event: str, task: Task, result: TaskResult | None = None) -> None:
    if not hooks.active(event):
        return
    if result is None:
        hooks.fire(hooks.attempt(event, task.context()))
    else:
        ended = (result.outcome.value, result.error_message, result.rule)
        hooks.fire(hooks.attempt(event, task.context(), *ended))


def _verdict(job: Job | None, exc: BaseException, attempt: int) -> policy.Verdict:
    """The retry policy's verdict on ``exc`` (the job's ``discard_on``, ``should_retry()``,
    ``retry_on``); a ``should_retry()`` that raises counts as no override."""
    if job is None:
        return policy.Verdict(True, policy.Rule.DEFAULT)
    answer: bool | None = None
    if type(job).should_retry is not Job.should_retry:
        try:
            answer = bool(job.should_retry(exc, attempt))
        except Exception:
            answer = None
    return policy.decide(
        type(exc), retry_on=job.retry_on, discard_on=job.discard_on, should_retry=answer
    )


def _result(task: Task, outcome: Outcome, started: float, **kw: Any) -> TaskResult:
    """An attempt's result: its duration since ``started`` (``time.perf_counter()``), and when
    it ended (``time.time()``: the worker records that, though it may read it later)."""
    duration = time.perf_counter() - started
    return TaskResult(task.job_id, task.lease, outcome, duration, ended_at=time.time(), **kw)


def _attempt(
    task: Task, chain: RunJob, codecs: Any, attempt: CurrentAttempt, span: Attempt | None = None
) -> Generator[Awaitable[Any] | Blocking, Any, TaskResult]:
    """One attempt, as a generator yielding the job's awaitable (async) and its transaction's
    commit (:class:`Blocking`) and sent their values (or thrown their exceptions): the sync and
    async drivers share every rule. ``span`` records the exception an attempt raised."""
    started = time.perf_counter()
    job: Job | None = None

    def ended(outcome: Outcome, **kw: Any) -> TaskResult:
        return _result(task, outcome, started, **kw)

    def errored(exc: BaseException, message: str | None = None, *given: Verdict) -> TaskResult:
        error_type = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
        verdict = given[0] if given else _verdict(job, exc, task.attempt)
        note = verdict.note(type(exc).__qualname__)
        message = message if message is not None else _message(exc)
        if span is not None:
            span.record(exc)
        return ended(
            Outcome.ERRORED,
            error_type=error_type,
            error_message=f"{message} ({note})" if note else message,
            traceback="".join(traceback.format_exception(exc)),
            retry_delay=retry_delay_for(job if job is not None else task.name, task.attempt),
            no_retry=not verdict.retry,
            rule=None if verdict.rule is policy.Rule.DEFAULT else verdict.rule.value,
        )

    try:
        cls = registry.resolve(task.name)
    except UnknownJobError as exc:
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        return ended(Outcome.ERRORED, error_type=kind, error_message=str(exc), unresolved=True)
    try:  # a retry would find them the same (corrupt, or an ORM row deleted): not retried
        args, kwargs = attempt.decode(task.params, codecs)
    except JobParamsError as exc:
        return errored(exc, _unusable(task, exc), policy.unusable_parameters())
    try:
        job = cls(*args, **kwargs)
        value = chain(job)
        if value is not None and inspect.isawaitable(value):
            value = yield value
    except DeferJob as defer:
        return ended(
            Outcome.DEFERRED,
            defer_delay=seconds_until(defer.delay, datetime.now(UTC)),
            defer_counts=defer.increment_retries,
            error_message=f"deferred for {defer.delay!r}",
        )
    except JobParamsError as exc:
        return errored(exc, _unusable(task, exc))
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from run() are job errors
        return errored(exc)
    try:
        encoded = encode_value(value, name="return value", codecs=codecs)
    except JobParamsError as exc:
        return errored(exc, f"the job's return value cannot be stored: {exc}")
    fields = yield from _committed(task, attempt, encoded, time.perf_counter() - started, job)
    return ended(fields.pop("outcome", Outcome.SUCCEEDED), **fields)


def _unusable(task: Task, exc: JobParamsError) -> str:
    return f"job {task.job_id} ({task.name}) has unusable parameters: {exc}"


def _committed(
    task: Task, attempt: CurrentAttempt, encoded: str, duration: float, job: Job | None
) -> Generator[Blocking, Any, dict[str, Any]]:
    """The fields of the result of an attempt whose job returned ``encoded``: a success,
    once the job's transaction (if it opened one) commits with its success recorded on it (by
    the worker's child: none inline); an error when it cannot."""
    conn = attempt.take(end=True)
    if conn is None:
        return {"result": encoded}
    end = attempt.success(encoded, duration) if attempt.row else None
    why = yield Blocking(functools.partial(commit, conn, end, attempt.flush))
    if why is None:
        return {"result": encoded, "recorded": end is not None}
    return {
        "outcome": Outcome.ERRORED,
        "error_type": "TransactionRolledBack",
        "error_message": f"the job returned, but {why}",
        "retry_delay": retry_delay_for(job if job is not None else task.name, task.attempt),
    }
