"""Running one job: what the child process (or the inline executor) does with a task."""

from __future__ import annotations

import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from corequeue import registry
from corequeue.core.errors import JobParamsError
from corequeue.core.params import decode_params, encode_value
from corequeue.core.retry import exponential_backoff
from corequeue.core.states import Outcome
from corequeue.jobs import DeferJob, Job
from corequeue.middleware import RunJob


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
    retry_delay: float = 0.0  # from the job's retry_delay(attempt), for errored attempts
    defer_delay: float = 0.0
    defer_counts: bool = False

    def wire(self) -> tuple[Any, ...]:
        """A plain tuple for the pipe: pickling builtins only is several times cheaper than a
        named tuple holding an enum, once per job on both sides."""
        return (self[0], self[1], self[2].value, *self[3:])

    @classmethod
    def from_wire(cls, fields: tuple[Any, ...]) -> TaskResult:
        return cls(fields[0], fields[1], _OUTCOMES[fields[2]], *fields[3:])


_OUTCOMES = {o.value: o for o in Outcome}


def _default_retry_delay(attempt: int) -> float:
    return exponential_backoff(attempt, 0.5)


def _delay_seconds(delay: Any) -> float:
    if isinstance(delay, datetime):
        aware = delay if delay.tzinfo is not None else delay.replace(tzinfo=UTC)
        return max((aware - datetime.now(UTC)).total_seconds(), 0.0)
    if isinstance(delay, timedelta):
        return max(delay.total_seconds(), 0.0)
    return max(float(delay), 0.0)


def run_task(task: Task, chain: RunJob, *, codecs: Any = ()) -> TaskResult:
    """Run ``task`` through the middleware ``chain`` and say how it ended. Never raises
    (except for the process being killed): every failure becomes an ``errored`` result."""
    started = time.perf_counter()
    job: Job | None = None

    def ended(outcome: Outcome, **kw: Any) -> TaskResult:
        return TaskResult(task.job_id, task.lease, outcome, time.perf_counter() - started, **kw)

    def errored(exc: BaseException, message: str | None = None) -> TaskResult:
        try:
            delay = job.retry_delay(task.attempt) if job is not None else None
        except Exception:
            delay = None
        return ended(
            Outcome.ERRORED,
            error_type=f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
            error_message=message if message is not None else str(exc),
            traceback="".join(traceback.format_exception(exc)),
            retry_delay=float(delay) if delay is not None else _default_retry_delay(task.attempt),
        )

    try:
        cls = registry.resolve(task.name)
        args, kwargs = decode_params(task.params, codecs=codecs)
        job = cls(*args, **kwargs)
        value = chain(job)
    except DeferJob as defer:
        return ended(
            Outcome.DEFERRED,
            defer_delay=_delay_seconds(defer.delay),
            defer_counts=defer.increment_retries,
            error_message=f"deferred for {defer.delay!r}",
        )
    except JobParamsError as exc:
        return errored(exc, f"job {task.job_id} ({task.name}) has unusable parameters: {exc}")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from run() are job errors
        return errored(exc)
    try:
        encoded = encode_value(value, name="return value", codecs=codecs)
    except JobParamsError as exc:
        return errored(exc, f"the job's return value cannot be stored: {exc}")
    return ended(Outcome.SUCCEEDED, result=encoded)
