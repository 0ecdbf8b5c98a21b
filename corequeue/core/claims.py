"""Which waiting jobs a worker claims, and in which order: the rule the store's claim
statement translates into SQL (a test in tests/store holds the two together).

A job is ready when it is waiting, its run time has come, and its queue is one the worker
serves (every queue when the worker names none). Ready jobs are claimed highest priority first,
then earliest run time, then oldest (lowest id). Pure: ``now`` is an argument.

A worker whose children offer async slots (an async job started there) claims by kind once it
knows some job names to be async (:func:`by_kind`): its free async slots only from jobs of
those names, its free sync slots from every other job (a name not seen yet counts as sync), so
slow sync jobs are never claimed for the hundreds of async slots and left queued in a child
while other workers sit idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from corequeue.core.states import JobState

#: The claim order as (field, descending) pairs, most significant first.
CLAIM_ORDER: tuple[tuple[str, bool], ...] = (("priority", True), ("run_at", False), ("id", False))

#: The state a job is claimed from.
CLAIMABLE_STATE = JobState.REQUESTED

#: Seconds a part of a split claim that came back short is left out while the other part
#: fills up (:func:`dry_parts`): a job of its kind that becomes ready meanwhile waits at most
#: that long for this worker (other workers may take it sooner).
DRY_SECONDS = 1.0


class Claimable(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def run_at(self) -> datetime: ...


def is_ready(
    state: JobState, run_at: datetime, queue: str, *, now: datetime, queues: Sequence[str]
) -> bool:
    """Whether a job with these fields may be claimed at ``now`` by a worker of ``queues``."""
    return state is CLAIMABLE_STATE and run_at <= now and (not queues or queue in queues)


def claim_key(job: Claimable) -> tuple[int, datetime, int]:
    """Sort key of :data:`CLAIM_ORDER`: claimed jobs sorted by it come in claim order."""
    return (-job.priority, job.run_at, job.id)


@dataclass(frozen=True, slots=True)
class Names:
    """A claim's filter on job names: only jobs named one of ``names`` (``among``), or only
    jobs named none of them."""

    names: tuple[str, ...]
    among: bool


@dataclass(frozen=True, slots=True)
class FreeRoom:
    """A worker's free slots by kind, and the job names known to be async."""

    sync: int
    async_: int
    async_names: frozenset[str] = frozenset()

    def took(self, part: Part, count: int) -> FreeRoom:
        """The room left once ``part``'s claim took ``count`` jobs (a part without a name
        filter is today's claim, for every kind: nothing is counted)."""
        if part.names is None:
            return self
        if part.names.among:
            return replace(self, async_=max(self.async_ - count, 0))
        return replace(self, sync=max(self.sync - count, 0))


@dataclass(frozen=True, slots=True)
class Part:
    """One claim of a split by kind: up to ``limit`` ready jobs that ``names`` lets through
    (None: any job)."""

    limit: int
    names: Names | None = None


def by_kind(ask: int, room: FreeRoom, dry: frozenset[bool] = frozenset()) -> list[Part]:
    """The claims that take up to ``ask`` jobs for ``room``, in order.

    With no name known to be async: one claim of any ``ask`` jobs. Otherwise a claim for the
    free sync slots from the jobs of every other name (unknown names included), then one for
    the free async slots from the jobs of the async names; each up to its kind's free slots.
    The caller lowers each limit by what the claims before it took (:func:`part_limit`): the
    sync part goes first, as the async room is usually larger than a whole claim. Parts with
    nothing to ask are left out, and so are the kinds in ``dry`` (by ``Names.among``: see
    :func:`dry_parts`); each part keeps the claim order within itself."""
    if ask <= 0:
        return []
    if not room.async_names:
        return [Part(ask)]
    names = tuple(sorted(room.async_names))
    limits = {False: min(room.sync, ask), True: min(room.async_, ask)}  # sync first
    return [
        Part(limit, Names(names, among))
        for among, limit in limits.items()
        if limit > 0 and among not in dry
    ]


def part_limit(part: Part, ask: int, claimed: int) -> int:
    """The limit of ``part``'s claim once the parts before it took ``claimed`` of ``ask``."""
    return max(min(part.limit, ask - claimed), 0)


def dry_parts(
    results: Sequence[tuple[Part, bool]], dry: frozenset[bool] = frozenset()
) -> frozenset[bool]:
    """The kinds (by ``Names.among``) of a split claim to leave out of the next claims (for up
    to :data:`DRY_SECONDS`), from the parts it made and whether each got all it asked for: a
    part that came back short while the other one filled up. A short part walked every ready
    job of its queues in claim order, the other kind's included; while that kind's backlog is
    being claimed, walking it again on each claim would cost as much as the backlog each time.
    The kinds left out of this claim (``dry``) stay out while the parts made all fill up."""
    if dry:
        return dry if results and all(full for _, full in results) else frozenset()
    filled = {part.names.among: full for part, full in results if part.names is not None}
    return frozenset(among for among, full in filled.items() if not full and filled.get(not among))


def more_ready(filled: Sequence[bool], *, split: bool) -> bool:
    """Whether more jobs may be ready now, from whether each claim a worker made got all it
    asked for: all of them did; split by kind, any did (the other kind may simply have
    nothing ready, and that kind's part is looked for again when a job ends or is enqueued)."""
    return any(filled) if split else all(filled)
