"""Delays: when a job enqueued (or deferred) with ``delay`` may run.

One rule for ``run_in_worker(delay=...)`` and ``raise DeferJob(delay=...)``:

- seconds (int or float) or a ``timedelta`` count from ``now``; a negative one means now;
- an aware ``datetime`` is the instant itself; one in the past means the job is due at once
  (it is kept as given: a schedule stores its occurrence as the job's ``run_at``);
- a naive ``datetime`` is refused, since its zone would be a guess: pass an aware one;
- anything else (booleans included) is refused.

Pure: ``now`` is an argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from corequeue.core.errors import JobParamsError

Delay = int | float | timedelta | datetime


def run_at(delay: Delay | None, now: datetime) -> datetime:
    """The instant a job delayed by ``delay`` from ``now`` may run (None: now), in UTC.

    Raises JobParamsError for a naive datetime, a value that is not a delay, or one that ends
    outside the years 1 to 9999 (what datetimes hold).
    """
    try:
        return _run_at(delay, now)
    except OverflowError:
        raise JobParamsError(
            f"delay={delay!r:.80} is out of range (a job may run from the year 1 to 9999): "
            "pass a shorter delay"
        ) from None


def _run_at(delay: Delay | None, now: datetime) -> datetime:
    if delay is None:
        return now
    if isinstance(delay, datetime):
        if delay.tzinfo is None:
            raise JobParamsError(
                f"delay={delay!r} is a naive datetime: pass an aware one (tzinfo=UTC)"
            )
        return delay.astimezone(UTC)
    if isinstance(delay, timedelta):
        return now + max(delay, timedelta(0))
    if isinstance(delay, (int, float)) and not isinstance(delay, bool):
        if not math.isfinite(delay):
            raise JobParamsError(f"delay={delay!r}: pass a finite number of seconds")
        return now + timedelta(seconds=max(delay, 0))
    raise JobParamsError(
        f"delay={delay!r}: pass seconds (int or float), a timedelta or an aware datetime"
    )


def seconds_until(delay: Delay | None, now: datetime) -> float:
    """Seconds from ``now`` until a job delayed by ``delay`` may run: never negative.

    Raises JobParamsError as :func:`run_at` does.
    """
    return max((run_at(delay, now) - now).total_seconds(), 0.0)


def next_stop(now: datetime, until: datetime, moments: Iterable[datetime]) -> datetime:
    """Where a drain travelling in time from ``now`` to ``until`` stops next: the earliest of
    ``moments`` (waiting jobs' run times, schedules' next occurrences) strictly after ``now``
    and before ``until``; ``until`` when there is none."""
    return min((m for m in moments if now < m < until), default=until)
