"""Lifecycle hooks: functions called when a job is enqueued, starts, finishes, fails for good
or is lost.

``@corequeue.on("job_failed")`` registers a function in code; ``hooks = [...]`` in
``[tool.corequeue]`` names modules to import (whose ``@corequeue.on`` functions register) or
``"EVENT:module.function"``. Where each fires: ``job_enqueued`` in the enqueuing process once
the insert is committed (for ``connection=``, when that transaction commits); ``job_started``
and ``job_finished`` in the process that runs the attempt, around it (``job_finished`` also
when it raised); ``job_failed`` (the job failed for good) and ``job_lost`` (an attempt was
lost with its worker or child) in the worker that records them. A hook that raises is logged
and never changes the job's outcome.

Every event carries the job's context, the fields ``corequeue.current_job()`` has, and the
endings how the attempt ended; each event is built here (:func:`enqueued`, :func:`attempt`,
:func:`endings`), whichever process fires it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from corequeue.context import JobContext
from corequeue.core.errors import ConfigError
from corequeue.runtime import resolve_setting_path

if TYPE_CHECKING:
    from corequeue.store.records import AttemptEnd

log = logging.getLogger("corequeue.hooks")

EVENTS = ("job_enqueued", "job_started", "job_finished", "job_failed", "job_lost")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """What a hook receives: the event's name, the job's context (``job``: the fields of
    ``corequeue.current_job()``: id, name, queue, priority, attempt, max_attempts, enqueued_at,
    run_at, worker_id, source; for ``job_enqueued`` attempt is 0 and worker_id ""), and for
    the events that end an attempt (``job_finished``, ``job_failed``, ``job_lost``) its
    ``outcome``, ``error`` and the retry ``rule`` that applied (``job_finished``: the rule
    that judged the exception; ``job_failed``: the one that failed the job, such as
    "discard_on" or "retries_exhausted"; see :class:`corequeue.core.policy.Rule`)."""

    event: str
    job: JobContext
    outcome: str | None = None
    error: str | None = None
    rule: str | None = None

    @property
    def job_id(self) -> int:
        return self.job.id

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def attempt(self) -> int:
        return self.job.attempt


class Enqueued(Protocol):
    """What is known of a job just enqueued (its row, or a test double's record of it)."""

    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def run_at(self) -> datetime | None: ...
    @property
    def source(self) -> str: ...


def enqueued(job_id: int, row: Enqueued, enqueued_at: datetime | None) -> JobEvent:
    """The ``job_enqueued`` event of the job ``row`` enqueued as ``job_id`` at
    ``enqueued_at`` (None where that is not known)."""
    context = JobContext(
        job_id,
        row.name,
        row.queue,
        row.priority,
        0,  # no attempt yet
        row.max_attempts,
        enqueued_at,
        row.run_at,
        "",
        row.source,
    )
    return JobEvent("job_enqueued", context)


def attempt(
    event: str,
    context: JobContext,
    outcome: str | None = None,
    error: str | None = None,
    rule: str | None = None,
) -> JobEvent:
    """The ``job_started`` or ``job_finished`` event of the attempt ``context`` runs."""
    return JobEvent(event, context, outcome, error, rule)


def endings(end: AttemptEnd) -> list[JobEvent]:
    """The events of a recorded ending: ``job_lost`` if its attempt was lost, ``job_failed``
    if it failed the job (both for a lost attempt that failed it)."""
    context = JobContext(
        end.job_id,
        end.name,
        end.queue,
        end.priority,
        end.attempt,
        end.change.max_attempts,
        end.enqueued_at,
        end.run_at,
        end.worker_id or "",
        end.source,
    )
    details = (end.outcome.value, end.error_message, end.rule)
    out = []
    if end.outcome.value == "lost":
        out.append(JobEvent("job_lost", context, *details))
    if end.change.state.value == "failed":
        out.append(JobEvent("job_failed", context, *details))
    return out


Hook = Callable[[JobEvent], Any]
H = TypeVar("H", bound=Hook)

_HOOKS: dict[str, list[Hook]] = {event: [] for event in EVENTS}


def on(event: str) -> Callable[[H], H]:
    """Register the decorated function for ``event`` (one of :data:`EVENTS`). It receives a
    :class:`JobEvent`. Raises ValueError for an unknown event."""
    if event not in _HOOKS:
        raise ValueError(f"unknown hook event {event!r}: use one of {', '.join(EVENTS)}")

    def register(func: H) -> H:
        if func not in _HOOKS[event]:
            _HOOKS[event].append(func)
        return func

    return register


def remove(event: str, func: Hook) -> None:
    """Unregister ``func`` from ``event`` (nothing when it is not registered)."""
    if func in _HOOKS.get(event, []):
        _HOOKS[event].remove(func)


def load(paths: Sequence[str]) -> None:
    """Load the ``hooks`` setting: each entry a module to import, or ``EVENT:dotted.path``.
    Raises ConfigError naming an entry that cannot be loaded."""
    for entry in paths:
        event, sep, path = entry.partition(":")
        try:
            if not sep:
                importlib.import_module(entry)
                continue
            func = resolve_setting_path(path)
            if not callable(func):
                raise ConfigError(f"hook {entry!r}: {path} is not callable")
            on(event)(func)
        except (ImportError, ValueError) as exc:
            raise ConfigError(
                f"hook {entry!r} cannot be loaded ({exc}): give a module to import or "
                f"EVENT:module.function with EVENT one of {', '.join(EVENTS)}"
            ) from None


def active(event: str) -> bool:
    """Whether any hook is registered for ``event`` (callers skip building the event if not)."""
    return bool(_HOOKS.get(event))


def fire(event: JobEvent) -> None:
    """Call every hook registered for ``event.event``. Never raises: a raising hook is logged."""
    for func in list(_HOOKS.get(event.event, ())):
        try:
            func(event)
        except Exception:
            log.exception(
                "hook %s for %s of job %d (%s) raised; the job's outcome is unchanged",
                getattr(func, "__qualname__", func),
                event.event,
                event.job.id,
                event.job.name,
            )


def fire_all(events: Sequence[JobEvent]) -> None:
    """:func:`fire` each of ``events`` in turn."""
    for event in events:
        fire(event)


def fire_endings(ends: Sequence[AttemptEnd], applied: Container[int] | None = None) -> None:
    """Fire ``job_lost`` for each recorded ending whose attempt was lost and ``job_failed`` for
    each that failed the job, in the worker that recorded them. ``applied``: the ids whose
    endings the store applied (None: all of them; a refused ending fires nothing)."""
    if not (active("job_lost") or active("job_failed")):
        return
    for end in ends:
        if applied is None or end.job_id in applied:
            fire_all(endings(end))
