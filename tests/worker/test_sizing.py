"""The room a worker's pool offers, and so its claims (executor.sizing): sync slots sized by the
jobs' durations, async slots once an async job started, and how much of the room a claim waits
for and takes."""

from __future__ import annotations

from typing import Any

from corequeue.core import claims
from corequeue.executor.child import ASYNC, SYNC, ChildConfig
from corequeue.executor.pool import ProcessPool, _Child
from corequeue.executor.sizing import INITIAL_PENDING, Sizing
from corequeue.executor.task import Task


def test_a_worker_without_async_jobs_claims_once_half_its_slots_are_free_all_of_them() -> None:
    sizing = Sizing(processes=2, threads=1, concurrency=500, pending_cap=1000)
    assert sizing.capacity == 2 * INITIAL_PENDING
    assert sizing.claim_batch == INITIAL_PENDING
    assert sizing.claim_most == sizing.capacity

    sizing.observe(0.0001)  # fast jobs: a child keeps more queued
    assert sizing.capacity == 2 * 500
    assert (sizing.claim_batch, sizing.claim_most) == (500, 1000)


def test_async_slots_are_claimed_for_early_and_in_parts() -> None:
    sizing = Sizing(processes=2, threads=1, concurrency=500, pending_cap=1000)
    sizing.saw_async()
    assert sizing.capacity == 2 * (INITIAL_PENDING + 500)
    assert sizing.claim_batch == sizing.capacity // 8  # not half: a free async slot idles
    assert sizing.claim_most == sizing.capacity // 4  # several claims refill freed slots
    # A child's room: its sync queue, and its async slots.
    assert sizing.rooms(pending=30, in_async=25, target=INITIAL_PENDING) == (5, 475)


def test_with_few_async_slots_a_claim_still_takes_the_sync_slots() -> None:
    sizing = Sizing(processes=2, threads=1, concurrency=1, pending_cap=1000)
    sizing.saw_async()
    assert sizing.capacity == 2 * (INITIAL_PENDING + 1)
    assert sizing.claim_most == 2 * INITIAL_PENDING  # not a quarter of the capacity
    assert sizing.claim_batch == INITIAL_PENDING


def test_the_first_async_job_started_asks_for_a_claim_once() -> None:
    pool = ProcessPool(ChildConfig((), (), "", concurrency=50), max_processes=1)
    none: Any = None  # no process behind it: only the bookkeeping is looked at
    process: Any = _NoProcess()
    child = _Child(process=process, conn=none, sock=none, ready=True)
    pool.children = [child]
    for job_id in (1, 2, 3):
        child.pending[job_id] = Task(job_id, "lease", "job", "[]", 1, None)
    assert not pool.sizing.grew()

    pool._receive(child, ("started_many", [(1, SYNC)]), [])
    assert not pool.sizing.grew()  # a sync job: nothing new to claim for
    pool._receive(child, ("started_many", [(2, ASYNC)]), [])
    assert pool.sizing.grew()  # async slots: claim for them now, not when a job ends
    # Two tasks in its sync room (one started sync, one not started), one in an async slot.
    assert pool.free_slots() == (INITIAL_PENDING - 2) + (50 - 1)
    pool._receive(child, ("started_many", [(3, ASYNC)]), [])
    assert not pool.sizing.grew()  # once


def test_the_pool_tells_the_claim_its_free_room_by_kind_and_the_async_names() -> None:
    pool = ProcessPool(ChildConfig((), (), "", concurrency=50), max_processes=1)
    none: Any = None
    process: Any = _NoProcess()
    child = _Child(process=process, conn=none, sock=none, ready=True)
    pool.children = [child]
    child.pending[1] = Task(1, "lease", "app.Slow", "[]", 1, None)
    child.pending[2] = Task(2, "lease", "app.Fetch", "[]", 1, None)
    assert pool.free_room() == claims.FreeRoom(INITIAL_PENDING - 2, 0)
    pool._receive(child, ("started_many", [(1, SYNC), (2, ASYNC)]), [])
    room = pool.free_room()
    assert room == claims.FreeRoom(INITIAL_PENDING - 1, 49, frozenset({"app.Fetch"}))
    assert pool.free_slots() == room.sync + room.async_


def test_a_child_near_its_max_jobs_may_take_its_last_jobs_of_either_kind() -> None:
    pool = ProcessPool(
        ChildConfig((), (), "", concurrency=50), max_processes=1, max_jobs_per_process=7
    )
    none: Any = None
    process: Any = _NoProcess()
    pool.children = [_Child(process=process, conn=none, sock=none, ready=True)]
    pool.sizing.saw_async()
    pool.kinds["app.Fetch"], pool.async_names = ASYNC, frozenset({"app.Fetch"})
    # Each kind up to the 7 jobs it has left (async jobs only, say: all 7 of them), and a
    # claim of no more than 7 in all.
    assert pool.free_room() == claims.FreeRoom(7, 7, frozenset({"app.Fetch"}))
    assert pool.free_slots() == 7
    pool.children[0].assigned = 2
    assert pool.free_room() == claims.FreeRoom(5, 5, frozenset({"app.Fetch"}))
    assert pool.free_slots() == 5


class _NoProcess:
    pid = 4242
    sentinel = -1
