"""The OpenTelemetry spans of corequeue (the ``otel`` extra; imported only where the
application uses OpenTelemetry, see :mod:`corequeue.tracing`).

Spans follow OpenTelemetry's messaging conventions, with ``messaging.system`` ``corequeue``:

- ``send QUEUE`` (kind PRODUCER), one per enqueue, in the caller's current trace:
  ``messaging.operation.type`` ``send``, ``messaging.destination.name`` the queue,
  ``messaging.message.id`` the job's id (``messaging.batch.message_count`` for several jobs,
  which share the span), ``corequeue.job.name``. Its context goes into each job's headers
  (the globally configured propagator: W3C ``traceparent`` by default).
- ``process QUEUE`` (kind CONSUMER), one per attempt, in the child that runs it: a child of
  the enqueue's span and linked to it; ``messaging.operation.type`` ``process``, the queue, the
  job's id, ``corequeue.job.name``, ``corequeue.job.attempt``, ``corequeue.job.outcome``
  (``succeeded``, ``errored``, ``deferred``, ``timed_out``, ``cancelled``) and, when the
  attempt raised, ``error.type`` and the exception recorded as a span event, with an error
  status. The span is current while the job runs: the job's own spans are its children.

An attempt whose child dies (a crash, a sync job killed at its timeout) ends no span: the
child could not export it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from corequeue.core.states import Outcome
from corequeue.store.records import NewJob

if TYPE_CHECKING:
    from corequeue.executor.task import Task, TaskResult

SYSTEM = "corequeue"
_tracer = trace.get_tracer("corequeue")  # a proxy until the application sets its provider
#: Attempts stopped inside their own event loop's task (an async job's timeout or cancel):
#: their spans end when the child says how (:func:`stopped`).
_stopping: dict[int, Attempt] = {}


def _headers(text: str) -> dict[str, str]:
    """A job's headers (a JSON object of strings), {} when there are none or they are not."""
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items()}


class Enqueue:
    """The producer span of one enqueue, and the rows that carry its context."""

    def __init__(self, rows: Sequence[NewJob]) -> None:
        queues = {row.queue for row in rows}
        names = {row.name for row in rows}
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        if len(queues) == 1:
            attributes["messaging.destination.name"] = next(iter(queues))
        if len(names) == 1:
            attributes["corequeue.job.name"] = next(iter(names))
        if len(rows) != 1:
            attributes["messaging.batch.message_count"] = len(rows)
        title = f"send {next(iter(queues))}" if len(queues) == 1 else "send"
        self.span = _tracer.start_span(title, kind=SpanKind.PRODUCER, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(self.span))
        self.rows = [
            replace(row, headers=json.dumps({**_headers(row.headers), **carrier}))
            if carrier
            else row
            for row in rows
        ]

    def inserted(self, ids: Sequence[int]) -> None:
        """The jobs' ids, once inserted (a unique key's existing job: its id)."""
        if len(ids) == 1:
            self.span.set_attribute("messaging.message.id", str(ids[0]))


@contextmanager
def enqueueing(rows: Sequence[NewJob]) -> Iterator[Enqueue]:
    """The producer span of one enqueue: ended when the block ends, with the exception that
    ends it recorded (nothing was enqueued then)."""
    spans = Enqueue(rows)
    try:
        yield spans
    except BaseException as exc:
        spans.span.record_exception(exc)
        spans.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
        spans.span.set_attribute("error.type", _error_type(exc))
        raise
    finally:
        spans.span.end()


def _error_type(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")


class Attempt:
    """The consumer span of one attempt: started and made current here, ended by :meth:`end`
    (or, for an attempt stopped in its event loop, :func:`stopped`)."""

    def __init__(self, task: Task) -> None:
        self.job_id = task.job_id
        parent = propagate.extract(_headers(task.headers)) if task.headers else None
        links: list[Link] = []
        if parent is not None:
            producer = trace.get_current_span(parent).get_span_context()
            if producer.is_valid:
                links.append(Link(producer))
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": task.queue,
            "messaging.message.id": str(task.job_id),
            "corequeue.job.name": task.name,
            "corequeue.job.attempt": task.attempt,
            "corequeue.job.max_attempts": task.max_attempts,
        }
        self.span = _tracer.start_span(
            f"process {task.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        )
        self._token: Any = otel_context.attach(trace.set_span_in_context(self.span))

    def record(self, exc: BaseException) -> None:
        """The attempt raised ``exc``: recorded on the span (an ``exception`` event)."""
        self.span.record_exception(exc)
        self.span.set_attribute("error.type", _error_type(exc))

    def end(self, result: TaskResult) -> None:
        """The attempt ended with ``result``: its outcome on the span, which ends."""
        self.leave()
        self._finish(result.outcome, result.error_message)

    def leave(self) -> None:
        """Make the span no longer current (in the context that made it current)."""
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None

    def interrupted(self) -> None:
        """The attempt was stopped in its event loop: the child says how (:func:`stopped`)."""
        self.leave()
        _stopping[self.job_id] = self

    def _finish(self, outcome: Outcome, error: str | None) -> None:
        self.span.set_attribute("corequeue.job.outcome", outcome.value)
        if outcome not in (Outcome.SUCCEEDED, Outcome.DEFERRED):
            self.span.set_status(Status(StatusCode.ERROR, error or outcome.value))
            if outcome is not Outcome.ERRORED:
                self.span.set_attribute("error.type", outcome.value)
        self.span.end()


def stopped(job_id: int, outcome: Outcome, error: str) -> None:
    """End the span of an attempt the child stopped (an async job's timeout or cancel)."""
    attempt = _stopping.pop(job_id, None)
    if attempt is not None:
        attempt._finish(outcome, error)


def flush() -> None:
    """Export the spans the tracer provider still holds (an SDK provider; others have none)."""
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if callable(force_flush):
        force_flush()
