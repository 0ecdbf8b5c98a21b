"""Unique keys and their policies: whether a job still holds its key, and what an enqueue does
when the key is held. Pure: no I/O, no clock (``now`` is an argument).

A job enqueued with a ``unique_key`` holds the key (per job name) while it is in the *scope*
of its policy, ``unique_until``:

- ``"started"``: while it waits to start for the first time. The claim that starts it ends the
  scope; a job that has started never holds a ``"started"`` key again, not even while it waits
  for a retry (an enqueue with the same key is then accepted beside it).
- ``"finished"`` (the default): while it waits or runs, retries included, until its ending
  (succeeded, failed or cancelled).
- a period such as ``"10m"``: as ``"finished"``, and for that long after the ending.

The database keeps at most one holder per (job name, key): the job's ``unique_hold`` column,
under a unique index. A job keeps its key there after it leaves its scope; an enqueue that
meets such a holder asks :func:`holds`, clears the stale hold and inserts, in one transaction.
So no write but an enqueue (and a person's retry) touches a hold, and the database settles
every race between enqueues of one key.

When the holder is in its scope, the enqueue's ``on_conflict`` decides (:func:`resolve`):
``"keep"`` returns the holder (``handle.deduplicated``), ``"replace"`` gives a waiting holder the
new parameters and run time (a debounce; a running holder is kept, as with ``"keep"``: its
arguments are in use), ``"raise"`` raises :class:`~corequeue.core.errors.DuplicateJob` and
inserts nothing.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from enum import StrEnum

from corequeue.core.errors import CorequeueError, DuplicateJob, InvalidTransition
from corequeue.core.states import JobState

STARTED = "started"
FINISHED = "finished"
#: The policy of a unique key enqueued without one (and of every key before policies existed).
DEFAULT_UNTIL = FINISHED

#: Period units, in seconds; a period is written with the largest unit that divides it.
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PERIOD = re.compile(r"^\s*(\d*\.?\d+)\s*([smhd])\s*$")
#: The longest period accepted (a year).
MAX_PERIOD = 366 * 86400.0

#: How many times an insert whose key's holder keeps changing is tried before giving up.
UNIQUE_INSERT_TRIES = 10


class UniquePolicyError(CorequeueError, ValueError):
    """A uniqueness option that cannot be used."""


class OnConflict(StrEnum):
    """What an enqueue does when its key is held by a job in its scope."""

    KEEP = "keep"
    REPLACE = "replace"
    RAISE = "raise"


class Resolution(StrEnum):
    """What the store does with an enqueue whose key is held (:func:`resolve`)."""

    KEEP = "keep"  # return the holder, insert nothing
    REPLACE = "replace"  # the waiting holder takes the new parameters and run time
    RAISE = "raise"  # DuplicateJob, insert nothing


def parse_until(value: object) -> str:
    """The canonical text of a ``unique_until``: ``"started"``, ``"finished"``, or a period
    (text such as ``"10m"``, ``"90s"``, ``"1.5h"``, seconds, or a ``timedelta``) written with
    its largest whole unit (``"600s"`` -> ``"10m"``). Raises UniquePolicyError otherwise."""
    if value in (STARTED, FINISHED):
        return str(value)
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _PERIOD.match(value)):
        seconds = float(match[1]) * _UNITS[match[2]]
    if seconds is None:
        raise UniquePolicyError(
            f"unique_until={value!r:.80} is not a policy: use 'started', 'finished' or a period "
            "such as '30s', '10m', '2h', '1d'"
        )
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_PERIOD):
        raise UniquePolicyError(
            f"unique_until={value!r:.80}: a period must be over 0 and at most a year"
        )
    return _period_text(seconds)


def _period_text(seconds: float) -> str:
    for unit, size in _UNITS.items():
        if (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s"


def period(until: str) -> timedelta | None:
    """The period after the ending of a canonical ``unique_until`` (None: "started", "finished")."""
    if until in (STARTED, FINISHED, ""):
        return None
    return timedelta(seconds=float(until[:-1]) * _UNITS[until[-1]])


def describe(until: str) -> str:
    """How long a key holds under ``until``, for people: "until it starts", "until it
    finishes", "until 10m after it finishes"."""
    if until == STARTED:
        return "until it starts"
    if until in (FINISHED, ""):
        return "until it finishes"
    return f"until {until} after it finishes"


def parse_on_conflict(value: object) -> OnConflict:
    """An ``on_conflict`` value as :class:`OnConflict`. Raises UniquePolicyError otherwise."""
    if isinstance(value, str) and value in {c.value for c in OnConflict}:
        return OnConflict(value)
    raise UniquePolicyError(f"on_conflict={value!r:.80} is not one of 'keep', 'replace', 'raise'")


def holds(
    until: str,
    state: JobState,
    started_at: datetime | None,
    finished_at: datetime | None,
    *,
    now: datetime,
) -> bool:
    """Whether a job enqueued with policy ``until`` is in its key's scope at ``now``."""
    if until == STARTED:
        return state is JobState.REQUESTED and started_at is None
    if state in (JobState.REQUESTED, JobState.RUNNING):
        return True
    after = period(until or DEFAULT_UNTIL)
    if after is None or finished_at is None or not state.is_final:
        return False
    return now < finished_at + after


def expires_at(until: str, finished_at: datetime | None) -> datetime | None:
    """When a finished job's hold on its key lapses (None: not finished, or no period)."""
    after = period(until)
    return finished_at + after if after is not None and finished_at is not None else None


def resolve(on_conflict: OnConflict, holder_state: JobState) -> Resolution:
    """What an enqueue with ``on_conflict`` does about a holder (in its scope) in
    ``holder_state``: a running or finished holder cannot take new arguments, so "replace"
    keeps it."""
    if on_conflict is OnConflict.RAISE:
        return Resolution.RAISE
    if on_conflict is OnConflict.REPLACE and holder_state is JobState.REQUESTED:
        return Resolution.REPLACE
    return Resolution.KEEP


def for_schedule(on_conflict: OnConflict) -> OnConflict:
    """The on_conflict of a job a schedule enqueues: "raise" would leave the schedule nobody to
    raise to (its occurrence would be tried again and again), so its held key keeps the holder."""
    return OnConflict.KEEP if on_conflict is OnConflict.RAISE else on_conflict


def retakes_on_retry(until: str, started_at: datetime | None) -> bool:
    """Whether a person's retry of a finished job takes its key again: whether waiting again
    puts it in its policy's scope (under "started", only a job that never started)."""
    return until != STARTED or started_at is None


def duplicate(name: str, unique_key: str, holder_id: int) -> DuplicateJob:
    """The error of an enqueue with on_conflict="raise" whose key is held."""
    return DuplicateJob(
        f"job {holder_id} ({name}) holds the unique key {unique_key!r}: nothing was enqueued "
        "(on_conflict='keep' returns that job instead)",
        job_id=holder_id,
    )


def duplicate_in_batch(name: str, unique_key: str) -> DuplicateJob:
    """The error of a batch with on_conflict="raise" that holds one key twice."""
    return DuplicateJob(
        f"two {name} jobs of one enqueue_many() have the unique key {unique_key!r} "
        "(on_conflict='raise'): nothing was enqueued"
    )


def contention(unique_key: str) -> InvalidTransition:
    """The error when the tries ran out (the key's holders kept finishing and starting)."""
    return InvalidTransition(f"could not enqueue unique job {unique_key!r}: contention")
