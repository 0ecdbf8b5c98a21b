"""How much work a worker's children take: the room the pool offers, and so its claims.

Per child: sync slots of ``threads - 1 + max_pending`` (a queue of about
:data:`QUEUED_SECONDS` of work at the sync jobs' mean duration), and async slots of
``concurrency`` once an async job was seen. A claim takes the free room, but waits until
enough of it is free (:attr:`Sizing.claim_batch`) and takes at most
:attr:`Sizing.claim_most` at once.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Work to keep queued per child, in seconds of the jobs' mean duration (see max_pending).
QUEUED_SECONDS = 0.05
#: Tasks a child may have queued before any job's duration is known.
INITIAL_PENDING = 10
#: Once async slots are offered, a claim waits for 1/ASYNC_BATCH of the capacity to be free (or
#: half the sync slots, if more), and takes at most 1/ASYNC_CHUNK of it: a free async slot
#: idles until it is refilled, so claims come early and in parts, each part handed over while
#: the next one is claimed.
ASYNC_BATCH = 8
ASYNC_CHUNK = 4


@dataclass
class Sizing:
    """The pool's settings and what it learned of its jobs, for the room it offers."""

    processes: int
    threads: int
    concurrency: int
    pending_cap: int  # max_pending_per_process
    mean_duration: float | None = None  # moving average of sync job durations
    async_seen: bool = False  # an async job started: async slots are offered
    grown: bool = False  # async slots were offered since the pool last asked (see grew)

    def observe(self, duration: float) -> None:
        """A sync job ran ``duration`` seconds."""
        mean = self.mean_duration
        self.mean_duration = duration if mean is None else mean + 0.05 * (duration - mean)

    def saw_async(self) -> None:
        """An async job started: async slots are offered from now on."""
        if not self.async_seen:
            self.async_seen = self.grown = True

    def grew(self) -> bool:
        """Whether :attr:`capacity` grew since the last call (the first async job started):
        the worker claims for the new room at once, not when a job next ends."""
        grown, self.grown = self.grown, False
        return grown

    @property
    def max_pending(self) -> int:
        """How many sync tasks a child may have queued beyond its threads: about
        :data:`QUEUED_SECONDS` of work at the sync jobs' recent mean duration, between 1 and
        ``max_pending_per_process``. Fast jobs are handed over (and claimed) in large
        batches; slow ones are not hoarded by one child while other workers sit idle."""
        cap = self.pending_cap
        if self.mean_duration is None:
            return min(cap, INITIAL_PENDING)
        return max(1, min(cap, int(QUEUED_SECONDS / max(self.mean_duration, 1e-6))))

    @property
    def sync_slots(self) -> int:
        """Sync tasks all the children may hold at once."""
        return self.processes * (self.max_pending + self.threads - 1)

    @property
    def capacity(self) -> int:
        """Tasks all the children may hold at once: the claim sizing's whole."""
        return self.sync_slots + (self.processes * self.concurrency if self.async_seen else 0)

    @property
    def claim_batch(self) -> int:
        """Free room worth a claim: half the :attr:`capacity` of a worker that ran no async
        job (a child's queue of sync tasks keeps its threads busy meanwhile). With async
        slots, less (:data:`ASYNC_BATCH`): a free async slot idles until it is refilled."""
        half = self.sync_slots // 2
        if not self.async_seen:
            return max(half, 1)
        return max(half, self.capacity // ASYNC_BATCH, 1)

    @property
    def claim_most(self) -> int:
        """Most jobs one claim takes: the :attr:`capacity`; with async slots, a part of it
        (:data:`ASYNC_CHUNK`; never less than the sync slots): hundreds of slots freed at once
        (jobs started together end together) are refilled by several claims, the children
        starting the first part's jobs while the next part is claimed, rather than waiting for
        one large claim; the next wave of endings is spread out too."""
        if not self.async_seen:
            return self.capacity
        return max(self.capacity // ASYNC_CHUNK, self.sync_slots, 1)

    def rooms(self, pending: int, in_async: int, target: int) -> tuple[int, int]:
        """Free (sync, async) slots of a child holding ``pending`` tasks, ``in_async`` of them
        in async slots, for a queue target of ``target`` sync tasks: ``threads - 1 + target``
        sync tasks, ``concurrency`` async ones (once any was seen)."""
        sync = self.threads - 1 + target - (pending - in_async)
        free_async = self.concurrency - in_async if self.async_seen else 0
        return max(sync, 0), max(free_async, 0)
