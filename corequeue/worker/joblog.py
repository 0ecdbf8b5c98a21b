"""The worker's line for each job that ends, and its counters for them.

A busy worker ends thousands of jobs a second, so the quiet lines (succeeded, deferred) skip
the ``LogRecord`` machinery when the command line's handler is the only place they would go
(:func:`corequeue.logs.direct_handler`); every other line is a record as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from corequeue import logs
from corequeue.core.states import JobState, Outcome
from corequeue.core.text import one_line
from corequeue.store.records import AttemptEnd, ClaimedJob
from corequeue.worker.counters import Counters

log = logging.getLogger("corequeue.worker")

#: The line logged for each finished job (its arguments: see log_ends). ``waited_ms``: from
#: run_at to the attempt's start; ``pid``: the child that ran it; ``source``: where the job was
#: enqueued; ``-`` when not known.
_FINISHED = (
    "finished job_id=%d name=%s queue=%s attempt=%d outcome=%s state=%s duration_ms=%.1f "
    "waited_ms=%s priority=%d pid=%s source=%s%s"
)


def log_claimed(claimed: Sequence[ClaimedJob]) -> None:
    """A DEBUG line for each job claimed (asked once per claim, not per job, when off)."""
    if log.isEnabledFor(logging.DEBUG):
        for job in claimed:
            log.debug(
                "claimed job_id=%d name=%s queue=%s attempt=%d",
                job.id,
                job.name,
                job.queue,
                job.attempts,
            )


def log_ends(counters: Counters, ends: Sequence[AttemptEnd], applied: set[int]) -> None:
    """Count and log the endings the store was asked to record; ``applied``: the ids of those
    it recorded (the others were refused: their lease had moved on)."""
    c = counters
    # The INFO lines of jobs that succeeded or deferred go out together, written straight to
    # the command line's handler when it is the only place they would go (see
    # logs.direct_handler); as records otherwise. Levels are asked once per batch.
    direct = logs.direct_handler(log, logging.INFO)
    info, warning = log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.WARNING)
    lines: list[str] = []

    def write_lines() -> None:  # before any other line, and at the end
        if direct is not None and lines:
            direct.write_lines(log, logging.INFO, lines)
            lines.clear()

    for end in ends:
        if end.job_id not in applied:
            c.refused += 1
            write_lines()
            _log_refused(end)
            continue
        outcome = end.outcome
        if outcome is _SUCCEEDED:
            c.succeeded += 1
        elif outcome is _DEFERRED:
            c.deferred += 1
        elif outcome is _CANCELLED:
            c.cancelled += 1
        else:
            c.failed += 1
            if end.change.state is _REQUESTED:
                c.retried += 1
        if outcome in _QUIET:
            if not info:
                continue
            if direct is not None:
                lines.append(_line(end))
                continue
            level = logging.INFO
        elif warning:
            level = logging.WARNING
        else:
            continue
        write_lines()
        # makeRecord + handle: Logger.log would also walk the stack for the caller's file
        # and line, once per job, for a format that does not show them.
        record = log.makeRecord(
            log.name, level, __file__, 0, _FINISHED, _line_args(end), None, "log_ends", _fields(end)
        )
        log.handle(record)
    write_lines()


_SUCCEEDED, _DEFERRED, _CANCELLED = Outcome.SUCCEEDED, Outcome.DEFERRED, Outcome.CANCELLED
_REQUESTED = JobState.REQUESTED
#: The outcomes logged at INFO (the rest at WARNING).
_QUIET = frozenset({Outcome.SUCCEEDED, Outcome.DEFERRED})


def _duration_ms(end: AttemptEnd) -> float:
    if end.started_at is None:
        return 0.0
    return (end.finished_at - end.started_at).total_seconds() * 1000


def _waited(end: AttemptEnd) -> float | None:
    """Milliseconds from the job's run_at to the attempt's start (None when not known)."""
    if end.run_at is None or end.started_at is None:
        return None
    return max((end.started_at - end.run_at).total_seconds() * 1000, 0.0)


#: Job names, queues and sources as the line shows them (escaped: see core.text), by their
#: text: a busy worker logs the same few thousands of times a second.
_escaped: dict[str, str] = {}


def _shown(text: str) -> str:
    shown = _escaped.get(text)
    if shown is None:
        if len(_escaped) >= 4096:
            _escaped.clear()
        shown = _escaped[text] = one_line(text)
    return shown


#: :data:`_FINISHED` with a job's name, queue and source filled in (escaped, and ``%`` doubled),
#: by those texts: a busy worker logs the same few thousands of times a second, and filling
#: in the other values is then one ``%`` with fewer arguments.
_filled: dict[tuple[str, str, str], str] = {}


def _filled_in(name: str, queue: str, source: str) -> str:
    key = (name, queue, source)
    template = _filled.get(key)
    if template is None:
        if len(_filled) >= 4096:
            _filled.clear()
        name, queue = _percent(one_line(name)), _percent(one_line(queue))
        source = _percent(one_line(source) or "-")
        template = _filled[key] = (
            f"finished job_id=%d name={name} queue={queue} attempt=%d outcome=%s state=%s "
            f"duration_ms=%.1f waited_ms=%s priority=%d pid=%s source={source}%s"
        )
    return template


def _percent(text: str) -> str:
    return text.replace("%", "%%")


def _line(end: AttemptEnd) -> str:
    """``_FINISHED % _line_args(end)``, with less work (once per job)."""
    waited = _waited(end)
    return _filled_in(end.name, end.queue, end.source) % (
        end.job_id,
        end.attempt,
        end.outcome,
        end.change.state,
        _duration_ms(end),
        "-" if waited is None else f"{waited:.1f}",
        end.priority,
        end.pid or "-",
        _detail(end),
    )


def _detail(end: AttemptEnd) -> str:
    if not end.error_type:
        return ""
    return one_line(f" error={end.error_type}: {end.error_message}")


def _line_args(end: AttemptEnd) -> tuple[object, ...]:
    """The values of :data:`_FINISHED`; text from jobs escaped (a newline would split the
    line): see core.text. (The outcome and state are StrEnum members: ``%s`` writes their
    values.)"""
    waited = _waited(end)
    return (
        end.job_id,
        _shown(end.name),
        _shown(end.queue),
        end.attempt,
        end.outcome,
        end.change.state,
        _duration_ms(end),
        "-" if waited is None else f"{waited:.1f}",
        end.priority,
        end.pid or "-",
        _shown(end.source) or "-",
        _detail(end),
    )


def _fields(end: AttemptEnd) -> dict[str, object]:
    """The per-job line's values as record attributes (what ``--log-format json`` writes)."""
    return {
        "job_id": end.job_id,
        "job_name": end.name,
        "queue": end.queue,
        "attempt": end.attempt,
        "outcome": end.outcome.value,
        "state": end.change.state.value,
        "duration_ms": round((end.finished_at - end.started_at).total_seconds() * 1000, 1)
        if end.started_at
        else 0.0,
        "waited_ms": None if (waited := _waited(end)) is None else round(waited, 1),
        "priority": end.priority,
        "pid": end.pid,
        "source": end.source or None,
        "error": f"{end.error_type}: {end.error_message}" if end.error_type else None,
    }


def _log_refused(end: AttemptEnd) -> None:
    log.warning(
        "refused job_id=%d attempt=%d outcome=%s: the job is no longer running "
        "under this attempt's lease (cancelled or rescued)",
        end.job_id,
        end.attempt,
        end.outcome.value,
    )


def log_stopped(counters: Counters, job_id: int, name: str, state: JobState | None) -> None:
    """A running job whose child the worker stopped because the job no longer runs under its
    lease: the store recorded its ending already (``state``: the job's state now, None when
    it was deleted), so the worker records none; it counts a cancelled one."""
    if state is JobState.CANCELLED:
        counters.cancelled += 1
        log.info("cancelled job_id=%d name=%s (stopped while running)", job_id, name)
    elif state is None:
        log.info("stopped job_id=%d name=%s: deleted while running", job_id, name)
    else:
        log.info(
            "stopped job_id=%d name=%s: no longer running here (rescued, now %s)",
            job_id,
            name,
            state.value,
        )


def log_stats(counters: Counters, *, running: int, degraded: bool) -> None:
    """The worker's periodic stats line (``degraded``: LISTEN is down, the worker polls)."""
    c = counters
    elapsed = max(time.monotonic() - c.since, 1e-9)
    log.info(
        "stats claimed=%d succeeded=%d failed=%d retried=%d deferred=%d cancelled=%d "
        "running=%d rate=%.1f/s%s",
        c.claimed,
        c.succeeded,
        c.failed,
        c.retried,
        c.deferred,
        c.cancelled,
        running,
        (c.succeeded + c.failed) / elapsed,
        " listen=degraded(polling)" if degraded else "",
    )
