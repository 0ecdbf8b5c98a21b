"""Flow control: which ready jobs a claim may start under the fleet's concurrency and rate
limits, and how limits are written. Pure: no I/O; ``now`` is an argument.

A limit is a set of *slots* under a key (a queue, or a job name and its ``limit_key``):

- a concurrency limit of N is N slots. A slot is held by a *chain*: jobs that one worker runs
  one after another, never two at once (its executor keeps a chain's jobs in one child, in
  order), the slot pointing at the chain's last job. The slot is free again once that job's
  attempt no longer runs, so at most N attempts of the key run at once. A worker that holds a
  slot may add jobs to its chain in later claims: a limit costs a database round trip per
  chain, not per job;
- a rate limit of N per period is N slots; a slot records the attempt that took it and is free
  again one period after that attempt's start (the one its child recorded, once it has ended),
  so any window of one period holds at most N starts (N + 1 starts would need two on one slot,
  a period apart).

A claim walks the ready jobs in claim order (:mod:`corequeue.core.claims`) and takes each one
whose every key still has a free slot, or that can join a chain of its worker's on the same
keys (:func:`grant`). A job over a limit is skipped, never failed: it waits for a later claim.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

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


class Candidate(NamedTuple):
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


#: A slot: (kind, key, slot number).
Slot = tuple[str, str, int]


class Granted(NamedTuple):
    """A job a claim starts and the slots it takes: ``chain``, the concurrency slots it runs
    under (one per key it needs; shared with the jobs before and after it in its chain), and
    ``rates``, the rate slots its start uses (one per key)."""

    id: int
    chain: tuple[Slot, ...]
    rates: tuple[Slot, ...]


def grant(
    candidates: Iterable[tuple[int, tuple[tuple[str, str], ...]]],
    free: Mapping[tuple[str, str], Sequence[int]],
    *,
    limit: int,
    held: Iterable[Sequence[Slot]] = (),
    depth: int = 0,
) -> list[Granted]:
    """The candidates a claim of at most ``limit`` jobs starts, in claim order, and their slots.

    ``candidates``: :class:`Candidate` values, or plain (id, needs) pairs. ``free``: the free
    slot numbers per key (absent: none). A job whose rate keys each have a free slot starts
    when its concurrency keys each have a free slot too (it opens a chain on them), or else
    when a chain on exactly its concurrency keys took fewer than ``depth`` jobs in this claim
    (it joins the shortest). ``held``: the chains the claiming worker holds
    already (their slots), which its jobs may join as well. ``depth`` 0: no chains, one job
    per concurrency slot."""
    left = {key: list(numbers) for key, numbers in free.items() if numbers}
    chains: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
    for slots in held if depth else ():
        chains.setdefault(tuple(sorted(s[:2] for s in slots)), []).append([tuple(slots), 0])
    split: dict[tuple[tuple[str, str], ...], tuple[Any, Any]] = {}  # needs -> (on, rated)
    out: list[Granted] = []
    for job_id, job_needs in candidates:
        if len(out) >= limit:
            break
        if not job_needs:
            out.append(Granted(job_id, (), ()))
            continue
        on, rated = split.get(job_needs) or split.setdefault(job_needs, _split(job_needs))
        if rated and not all(n in left for n in rated):
            continue
        chain: list[Any] | None = None
        if on and (on[0] in left if len(on) == 1 else all(n in left for n in on)):
            chain = [tuple((*n, _take(left, n)) for n in on), 0]
            if depth:
                chains.setdefault(on, []).append(chain)
        elif on:
            group = chains.get(on)
            if group:
                chain = group[0] if len(group) == 1 else min(group, key=_count)
            if chain is None or chain[1] >= depth:
                continue
        if chain is not None:
            chain[1] += 1
        rates = tuple((*n, _take(left, n)) for n in rated) if rated else ()
        out.append(Granted(job_id, chain[0] if chain else (), rates))
    return out


def _take(left: dict[tuple[str, str], list[int]], key: tuple[str, str]) -> int:
    """The first free slot of ``key`` (``left`` keeps only keys with slots left)."""
    numbers = left[key]
    if len(numbers) == 1:
        del left[key]
        return numbers[0]
    return numbers.pop(0)


def _count(chain: list[Any]) -> int:
    return int(chain[1])


def _split(needs: tuple[tuple[str, str], ...]) -> tuple[Any, Any]:
    """A job's needs as (its concurrency keys, sorted; its rate keys)."""
    on = tuple(sorted(n for n in needs if n[0] == CONCURRENCY))
    return on, tuple(n for n in needs if n[0] == RATE)


def slot_is_free(
    kind: str, *, holder_running: bool, last_start_age: float | None, period: float
) -> bool:
    """Whether a slot may be taken (the store translates this; a test ties them).

    A concurrency slot is free unless the last job of its chain (the slot's holder) still runs
    the attempt that took it: the jobs before it in the chain ran one after another on one
    worker and ended before it started. A rate slot is free when it was never used, or when
    the attempt that took it no longer runs and started at least one period ago (the start its
    child recorded: a job may start a while after its claim, and the next start on the slot
    must be a period after the real one)."""
    if kind == CONCURRENCY:
        return not holder_running
    return last_start_age is None or (not holder_running and last_start_age >= period)


def may_give_back(gates: Iterable[str], running: Iterable[str]) -> bool:
    """Whether an unstarted job of a chain (its ``gates``) may go back to the queue while tasks
    with the gates ``running`` are under way in its worker. Not while a task of its chain runs:
    the chain's slot points at the chain's last job, so giving that job back would free the
    slot while the chain still ran."""
    return set(running).isdisjoint(gates)
