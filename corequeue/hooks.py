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
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from corequeue.context import JobContext
from corequeue.core.errors import ConfigError
from corequeue.runtime import resolve_setting_path

if TYPE_CHECKING:
    from corequeue.store.records import AttemptEnd

log = logging.getLogger("corequeue.hooks")

EVENTS = ("job_enqueued", "job_started", "job_finished", "job_failed", "job_lost")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """What a hook receives. ``job`` is the job's context where the process knows it (in the
    child and inline), ``None`` elsewhere; ``job_id`` and ``name`` are always set."""

    event: str
    job_id: int
    name: str
    queue: str
    job: JobContext | None = None
    outcome: str | None = None  # job_finished, job_failed, job_lost: how the attempt ended
    error: str | None = None  # the attempt's error, when it raised
    attempt: int | None = None


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
                event.job_id,
                event.name,
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
        if applied is not None and end.job_id not in applied:
            continue
        outcome = end.outcome.value
        common = (end.job_id, end.name, end.queue, None, outcome, end.error_message, end.attempt)
        if outcome == "lost":
            fire(JobEvent("job_lost", *common))
        if end.change.state.value == "failed":
            fire(JobEvent("job_failed", *common))
