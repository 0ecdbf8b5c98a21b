"""Per-worker queue shares (``corequeue run --queue mail=2 --queue default``): how many jobs of
each queue a worker claims, and which of its children a job of a capped queue may go to. Pure:
no I/O; the worker's pool and claim lane act on what it returns.

A queue written ``NAME=K`` is *capped*: its jobs occupy at most K of the worker's children at
once. A child *holds* a capped queue while a job of that queue is handed to it and not ended
(queued there or running); a job of the queue goes to a child that holds it, or to any child
while fewer than K do (:func:`may_take`). So with ``--threads`` or ``--concurrency`` the queue's
jobs use the slots of at most K children, and the other children stay free for the other
queues. A bare ``NAME`` has no cap. A share is a maximum, not a reservation: children a capped
queue does not use run the other queues' jobs.

A claim is made per queue group (:func:`claim_plan`): each capped queue for at most the room of
the children it may use, then the uncapped queues for whatever room is left. The worker never
claims more of a capped queue than its children can take, so it never holds jobs of a flood it
cannot start soon, and the flood cannot fill the slots of the other queues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class ShareError(ValueError):
    """A queue's share is not written ``NAME`` or ``NAME=K`` with a whole number K >= 1."""


def parse(spec: str) -> tuple[str, int | None]:
    """``"mail=2"`` -> ("mail", 2); ``"mail"`` -> ("mail", None). Raises :class:`ShareError`
    (its message says what is wrong) for an empty name or a K that is not a whole number >= 1.
    The bound K <= the worker's children is the caller's to check (:func:`fits`)."""
    name, sep, count = spec.partition("=")
    name = name.strip()
    if not name:
        raise ShareError("a queue needs a name")
    if not sep:
        return name, None
    count = count.strip()
    if not (count.isascii() and count.isdigit()) or int(count) < 1:
        raise ShareError("a queue's share is a number of children from 1")
    return name, int(count)


def fits(cap: int, children: int) -> bool:
    """Whether a share of ``cap`` children can be given on a worker of ``children``."""
    return 1 <= cap <= children


def nearest(cap: int, children: int) -> int:
    """The share to suggest instead of ``cap`` on a worker of ``children`` (between 1 and
    ``children``)."""
    return max(min(cap, children), 1)


def split(specs: Sequence[str]) -> tuple[tuple[str, ...], dict[str, int]]:
    """The queue names of ``specs`` in order, and the caps of those written ``NAME=K``.
    Raises :class:`ShareError` as :func:`parse` does, or when a queue is named twice."""
    names: list[str] = []
    caps: dict[str, int] = {}
    for spec in specs:
        name, cap = parse(spec)
        if name in names:
            raise ShareError(f"queue {name!r} is named twice")
        names.append(name)
        if cap is not None:
            caps[name] = cap
    return tuple(names), caps


def written(name: str, cap: int | None) -> str:
    """How a share is written: ``mail=2``, or ``mail`` without a cap."""
    return name if cap is None else f"{name}={cap}"


@dataclass(frozen=True, slots=True)
class Room:
    """One child that takes work: how many more tasks it may take now (``free``) and the capped
    queues it holds (a task of theirs is handed to it and not ended)."""

    free: int
    holds: frozenset[str] = frozenset()


def may_take(queue_cap: int, holders: int, *, holds: bool) -> bool:
    """Whether a child may take a task of a queue capped at ``queue_cap`` children while
    ``holders`` children hold that queue (``holds``: this child is one of them)."""
    return holds or holders < queue_cap


def room_for(queue: str, cap: int, rooms: Sequence[Room]) -> int:
    """How many tasks of ``queue`` (capped at ``cap`` children) the children can take now: the
    free room of the children that hold it, and of the roomiest others while fewer than ``cap``
    hold it (the pool hands a new holder's first task to its least loaded child)."""
    held = [r.free for r in rooms if queue in r.holds]
    others = sorted((r.free for r in rooms if queue not in r.holds), reverse=True)
    return sum(held) + sum(others[: max(cap - len(held), 0)])


@dataclass(frozen=True, slots=True)
class Group:
    """One claim of a plan: up to ``limit`` ready jobs of ``queues``."""

    queues: tuple[str, ...]
    limit: int


def claim_plan(
    queues: Sequence[str], caps: Mapping[str, int], rooms: Sequence[Room], free: int
) -> list[Group]:
    """The claims to make, in order, for ``free`` free slots: each capped queue for at most its
    room (:func:`room_for`), then the uncapped ``queues`` together for all of ``free``. The
    claims share ``free``: the caller lowers each limit by what the claims before it took
    (:func:`next_limit`), so a capped queue with nothing ready leaves its room to the others.
    Groups with nothing to ask are left out; an empty plan: nothing may be claimed now."""
    plan = [
        Group((name,), min(room_for(name, cap, rooms), free))
        for name in queues
        if (cap := caps.get(name)) is not None
    ]
    uncapped = tuple(name for name in queues if name not in caps)
    if uncapped:
        plan.append(Group(uncapped, free))
    return [group for group in plan if group.limit > 0]


def claimable(plan: Sequence[Group], free: int) -> int:
    """The most jobs ``plan`` can claim in all (at most ``free``)."""
    return min(sum(group.limit for group in plan), free)


def next_limit(group: Group, free: int, claimed: int) -> int:
    """The limit of ``group``'s claim once the claims before it took ``claimed`` of ``free``."""
    return max(min(group.limit, free - claimed), 0)
