"""Flow control: which ready jobs a claim may start under the fleet's concurrency and rate
limits, and how limits are written. Pure: no I/O; ``now`` is an argument.

A limit is a set of *slots* under a key (a queue, or a job name and its ``limit_key``):

- a concurrency limit of N is N slots; a slot is held by the attempt that took it while that
  attempt runs, so at most N attempts of the key run at once;
- a rate limit of N per period is N slots; a slot records the start that took it and is free
  again one period later, so any window of one period holds at most N starts (N + 1 starts
  would need two on one slot, a period apart).

A claim walks the ready jobs in claim order (:mod:`corequeue.core.claims`) and takes each one
whose every key still has a free slot, using one slot per key (:func:`grant`). A job over a
limit is skipped, never failed: it waits for a later claim.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from corequeue.core.errors import CorequeueError

#: The kinds of slot: concurrency ("c") and rate ("r").
CONCURRENCY, RATE = "c", "r"

#: The largest limit accepted (a limit is that many slot rows).
MAX_LIMIT = 10_000
#: Rate limit periods by unit.
PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([smhd]?)\s*$")


class LimitError(CorequeueError, ValueError):
    """A concurrency or rate limit that cannot be used."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts in any ``period`` seconds."""

    count: int
    period: float

    def __str__(self) -> str:
        for unit, seconds in PERIODS.items():
            if self.period == seconds:
                return f"{self.count}/{unit}"
        return f"{self.count}/{self.period:g}s"


def parse_rate(text: object, *, what: str = "rate_limit") -> Rate:
    """``"100/m"``, ``"10/s"``, ``"5/2h"``, ``"3/0.5s"`` as a :class:`Rate`."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise LimitError(
            f"{what}={text!r:.80} is not a rate: write it as COUNT/PERIOD, e.g. '10/s', '100/m', "
            "'5/2h' (units s, m, h, d)"
        )
    count, amount, unit = int(match[1]), match[2], match[3] or "s"
    period = (float(amount) if amount not in ("", ".") else 1.0) * PERIODS[unit]
    if not 1 <= count <= MAX_LIMIT or not math.isfinite(period) or not 0 < period <= 366 * 86400:
        raise LimitError(
            f"{what}={text!r:.80}: the count must be 1 to {MAX_LIMIT} and the period over 0 and "
            "at most a year"
        )
    return Rate(count, period)


def check_concurrency(value: object, *, what: str = "concurrency_limit") -> int:
    """A concurrency limit: an integer from 1 to :data:`MAX_LIMIT`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise LimitError(f"{what}={value!r:.80} must be an integer from 1 to {MAX_LIMIT}")
    return value


def queue_key(queue: str) -> str:
    """The key of a queue's own limits."""
    return f"queue:{queue}"


def job_key(name: str, limit_key: str) -> str:
    """The key of a job's limits: per job name, and per ``limit_key`` when one is given."""
    return f"job:{name}:{limit_key}" if limit_key else f"job:{name}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A ready job, in claim order, and the slots (kind, key) it needs to start."""

    id: int
    needs: tuple[tuple[str, str], ...]


def needs(
    queue: str,
    concurrency_key: str,
    rate_key: str,
    *,
    queue_limited: Mapping[str, tuple[bool, bool]],
) -> tuple[tuple[str, str], ...]:
    """The slots a job needs: its own concurrency and rate keys (empty when it has none) and its
    queue's, when the queue has a concurrency or rate limit (``queue_limited[queue]``)."""
    out: list[tuple[str, str]] = []
    if concurrency_key:
        out.append((CONCURRENCY, concurrency_key))
    if rate_key:
        out.append((RATE, rate_key))
    by_concurrency, by_rate = queue_limited.get(queue, (False, False))
    if by_concurrency:
        out.append((CONCURRENCY, queue_key(queue)))
    if by_rate:
        out.append((RATE, queue_key(queue)))
    return tuple(out)


def grant(
    candidates: Iterable[Candidate], free: Mapping[tuple[str, str], int], *, limit: int
) -> list[Candidate]:
    """The candidates a claim of at most ``limit`` jobs starts, in claim order: each one whose
    every needed slot key still has a free slot (``free``: free slots per key, absent = none),
    one slot per key taken per started job."""
    left = dict(free)
    out: list[Candidate] = []
    for job in candidates:
        if len(out) >= limit:
            break
        if all(left.get(need, 0) > 0 for need in job.needs):
            for need in job.needs:
                left[need] -= 1
            out.append(job)
    return out


def slot_is_free(
    kind: str,
    *,
    holder_running: bool,
    holder_claim_pending: bool,
    last_start_age: float | None,
    period: float,
) -> bool:
    """Whether a slot may be taken (the store translates this; a test ties them).

    A concurrency slot is free unless the attempt that took it still runs, or its claim is not
    yet visible (the job still waits with fewer attempts than the slot's). A rate slot is free
    when it was never used or its last start is at least one period old."""
    if kind == CONCURRENCY:
        return not (holder_running or holder_claim_pending)
    return last_start_age is None or last_start_age >= period


def assign(
    granted: Sequence[Candidate], free_slots: Mapping[tuple[str, str], Sequence[int]]
) -> list[tuple[int, str, str, int]]:
    """(job id, kind, key, slot number) for each slot the granted jobs take: per key, the free
    slots in order to the jobs in claim order."""
    used: dict[tuple[str, str], int] = {}
    out = []
    for job in granted:
        for need in job.needs:
            i = used.get(need, 0)
            used[need] = i + 1
            out.append((job.id, need[0], need[1], free_slots[need][i]))
    return out
