"""Traces of enqueues and attempts with OpenTelemetry (the ``otel`` extra), where the
application uses it.

corequeue traces in a process whose application has imported OpenTelemetry's API (to configure
a tracer provider and an exporter, or under ``opentelemetry-instrument``). There, an enqueue is
a producer span in the caller's current trace; the job's row keeps that span's context (its
``headers``, W3C trace context) and the worker hands it to the child with the task; each
attempt is a consumer span in the child, a child of the enqueue's span and linked to it
(:mod:`corequeue.otel` builds them). Where OpenTelemetry is not imported, nothing here imports
it, and the check that says so is one dictionary look-up: without the extra, tracing costs
nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corequeue.core.states import Outcome
    from corequeue.executor.task import Task
    from corequeue.otel import Attempt, Enqueue
    from corequeue.store.records import NewJob


def enabled() -> bool:
    """Whether this process traces: the application imported OpenTelemetry's trace API (no
    tracer provider can be set, nor any span be current, without it)."""
    return "opentelemetry.trace" in sys.modules


def enqueueing(rows: Sequence[NewJob]) -> AbstractContextManager[Enqueue]:
    """The producer span of one enqueue of ``rows`` (call only when :func:`enabled`); its
    ``rows`` carry the span's context in their headers."""
    from corequeue import otel

    return otel.enqueueing(rows)


def attempt(task: Task) -> Attempt:
    """Start the consumer span of ``task``'s attempt, current until it ends (call only when
    :func:`enabled`)."""
    from corequeue import otel

    return otel.Attempt(task)


def flush() -> None:
    """Export the spans not exported yet (a child, before it exits: its exit runs no atexit
    handlers, so a batching span processor would lose them). Nothing when not tracing."""
    if enabled():
        from corequeue import otel

        otel.flush()


def stopped(job_id: int, outcome: Outcome, error: str) -> None:
    """End the span of an attempt the child stopped in its event loop (an async job's timeout
    or cancel) with ``outcome``. Nothing when not tracing."""
    if enabled():
        from corequeue import otel

        otel.stopped(job_id, outcome, error)
