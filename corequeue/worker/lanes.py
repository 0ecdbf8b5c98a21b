"""The worker's two database lanes: claims (and look-ups of the next ready time) and the
recording of endings, each a call at a time in a thread of its own on PostgreSQL (see
:mod:`corequeue.worker.offload`), so children get their next batch while the last one is
recorded.

A lane's ``take()`` gives the finished call's outcome once, as a value (or raises the call's
exception, :class:`~corequeue.core.errors.DatabaseUnavailable` during an outage); the claim
lane's is tagged by what was asked: :class:`Claimed` or :class:`NextReady`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from corequeue.config import Settings
from corequeue.core import claims, shares
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd, ClaimedJob
from corequeue.worker.notifier import WakeUp
from corequeue.worker.offload import Offload
from corequeue.worker.pids import ChildPool

#: The room of a lane that is told nothing of kinds: one claim of any jobs.
NO_KINDS = claims.FreeRoom(0, 0)


class Claimed(NamedTuple):
    """A claim's jobs (``asked``: how many it asked for; ``more``: more may be ready now, as
    its parts got all they asked for, or with a split by kind, one of them did)."""

    jobs: list[ClaimedJob]
    asked: int
    more: bool


class NextReady(NamedTuple):
    """When the next waiting job becomes ready (None: no job waits)."""

    when: datetime | None


ClaimOutcome = Claimed | NextReady


class _Lane:
    """One database call at a time, off the loop's thread on PostgreSQL (:class:`Offload`)."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self._offload = Offload(threaded=store.is_postgresql, name=name)

    @property
    def busy(self) -> bool:
        """Whether a call was started and its outcome not taken yet."""
        return self._offload.busy

    @property
    def done(self) -> WakeUp:
        """Readable once the running call has finished."""
        return self._offload.done

    def close(self) -> None:
        self._offload.close()


class ClaimLane(_Lane):
    def __init__(
        self,
        store: Store,
        queues: Sequence[str],
        worker_id: str,
        depth: Callable[[], int] = lambda: 0,
        *,
        caps: Mapping[str, int] | None = None,
        rooms: Callable[[], Sequence[shares.Room]] = list,
        kinds: Callable[[], claims.FreeRoom] = lambda: NO_KINDS,
    ) -> None:
        """``depth``: how many jobs a chain under a concurrency limit may take per claim (the
        executor runs a chain's jobs one after another in one child). ``caps``: the queue
        shares (queue -> most children), ``rooms``: the children's free room and the capped
        queues they hold; with shares, a claim is one per queue group
        (:func:`corequeue.core.shares.claim_plan`). ``kinds``: the free room by kind and the
        job names known to be async; once some are, each claim is split by kind
        (:func:`corequeue.core.claims.by_kind`)."""
        super().__init__(store, "corequeue-claim")
        self.queues = list(queues)
        self.worker_id = worker_id
        self.depth = depth
        self.caps = dict(caps or {})
        self.rooms = rooms
        self.kinds = kinds
        # The claims (queues, name filter) that came short last time: a look-up for the next
        # ready job asks about those only (a capped queue whose children are full, or the jobs
        # of a kind whose slots are full, have ready jobs the worker may not claim, and "one
        # is ready now" would make it claim again).
        self._short: list[tuple[tuple[str, ...], claims.Names | None]] = []
        # Split by kind: the kinds left out of the claims of a queue group, and until when
        # (monotonic): see claims.dry_parts.
        self._dry: dict[tuple[str, ...], tuple[frozenset[bool], float]] = {}

    @classmethod
    def of(cls, store: Store, settings: Settings, worker_id: str, pool: ChildPool) -> ClaimLane:
        """The claim lane of a worker with ``settings`` and children ``pool``."""
        return cls(
            store,
            settings.queue_names,
            worker_id,
            lambda: pool.chain_depth,
            caps=settings.shares,
            rooms=pool.share_rooms,
            kinds=pool.free_room,
        )

    def claimable(self, free: int) -> int:
        """How many jobs a claim may take now with ``free`` free slots: all of them, but with
        queue shares no more than the capped queues' children and the uncapped queues take."""
        if not self.caps:
            return free
        plan = shares.claim_plan(self.queues, self.caps, self.rooms(), free)
        return shares.claimable(plan, free)

    def claim(self, limit: int, now: datetime, *, inline: bool) -> bool:
        """Claim up to ``limit`` jobs under a new lease. Returns True when the call already
        ran (``inline``: the caller has nothing else to do meanwhile, or SQLite)."""
        store, queues, worker_id = self.store, self.queues, self.worker_id
        lease = uuid.uuid4().hex
        depth = self.depth()
        plan = [shares.Group(tuple(queues), limit)]
        if self.caps:
            plan = shares.claim_plan(queues, self.caps, self.rooms(), limit)
        room = self.kinds()
        clock = time.monotonic()
        dry = {q: kinds for q, (kinds, until) in self._dry.items() if until > clock}

        def claim() -> Claimed:
            nonlocal room
            jobs: list[ClaimedJob] = []
            asked = 0
            calls: list[tuple[tuple[str, ...], claims.Names | None, bool]] = []
            for group in plan:
                ask = shares.next_limit(group, limit, len(jobs))
                took = 0
                left_out = dry.get(group.queues, frozenset())
                results: list[tuple[claims.Part, bool]] = []
                for part in claims.by_kind(ask, room, left_out):
                    part_ask = claims.part_limit(part, ask, took)
                    if part_ask <= 0:
                        continue
                    got = store.job_claim_many(
                        queues=group.queues,
                        limit=part_ask,
                        lease=lease,
                        worker_id=worker_id,
                        now=now,
                        chain_depth=depth,
                        names=part.names,
                    )
                    jobs += got
                    asked += part_ask
                    took += len(got)
                    room = room.took(part, len(got))
                    filled = len(got) >= part_ask
                    results.append((part, filled))
                    calls.append((group.queues, part.names, filled))
                self._note_dry(group.queues, claims.dry_parts(results, left_out), left_out, clock)
            self._short = [(q, n) for q, n, filled in calls if not filled]
            more = claims.more_ready([call[2] for call in calls], split=bool(room.async_names))
            return Claimed(jobs, asked, more)

        return self._offload.start(claim, inline=inline)

    def _note_dry(
        self, queues: tuple[str, ...], dry: frozenset[bool], was: frozenset[bool], clock: float
    ) -> None:
        """Leave the kinds ``dry`` out of the claims of ``queues`` (they were left out of this
        one: for the rest of their time; newly: for ``claims.DRY_SECONDS``)."""
        if not dry:
            self._dry.pop(queues, None)
        elif dry != was:
            self._dry[queues] = (dry, clock + claims.DRY_SECONDS)

    def look_up(self, *, inline: bool) -> bool:
        """Look up when the next waiting job becomes ready (as :meth:`claim` returns): of the
        claims the last one made that found too few jobs (with queue shares, of their queues;
        split by kind, of their kinds)."""
        store = self.store
        asks: dict[claims.Names | None, list[str]] = {}
        for queues, names in self._short:
            listed = asks.setdefault(names, [])
            listed += [q for q in (queues if self.caps else self.queues) if q not in listed]

        def look() -> NextReady:
            found = [store.job_next_run_at(queues, names) for names, queues in asks.items()]
            return NextReady(min((when for when in found if when is not None), default=None))

        return self._offload.start(look, inline=inline)

    def take(self, timeout: float | None = 0.0) -> ClaimOutcome | None:
        """The finished call's outcome, once; None while it still runs (waiting up to
        ``timeout`` seconds; None: as long as it takes). Raises the call's exception."""
        outcome: ClaimOutcome | None = _value(self._offload.take(timeout))
        return outcome


class RecordLane(_Lane):
    def __init__(self, store: Store) -> None:
        super().__init__(store, "corequeue-record")

    def record(self, ends: Sequence[AttemptEnd]) -> bool:
        """Record ``ends`` (compare-and-set on each lease). Returns True when the call already
        ran (SQLite). Never inline on PostgreSQL, even with nothing running: the children
        would wait behind it for their next claim."""
        store = self.store
        return self._offload.start(lambda: store.job_finish_many(ends))

    def take(self, timeout: float | None = 0.0) -> set[int] | None:
        """The ids of the endings the store applied (the others' leases had moved on), once;
        None while the call still runs. Raises the call's exception (nothing was recorded)."""
        applied = _value(self._offload.take(timeout))
        return None if applied is None else set(applied)


def _value(outcome: tuple[Any, BaseException | None] | None) -> Any:
    if outcome is None:
        return None
    value, exc = outcome
    if exc is not None:
        raise exc
    return value
