"""Which child each task goes to (corequeue.executor.placement), with queue shares: a capped
queue's tasks stay in at most its number of children, use those children's slots, and leave
the other children to the other queues; a chain of a capped queue stays in one child. Also the
claim lane of a worker with shares: one claim per queue group, sized by the children's room."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corequeue.core import claims, shares
from corequeue.executor.child import ASYNC, ChildConfig
from corequeue.executor.placement import Placing, holders, place
from corequeue.executor.pool import ProcessPool, _Child
from corequeue.executor.task import Task
from corequeue.worker.lanes import Claimed, ClaimLane, NextReady


def children(n: int) -> list[Any]:
    return [SimpleNamespace(pending={}, in_async=set(), assigned=0) for _ in range(n)]


def task(job_id: int, queue: str, name: str = "J", gates: tuple[str, ...] = ()) -> Task:
    return Task(job_id, "lease", name, "[]", 1, None, queue, gates=gates)


def hand_over(kids: list[Any], tasks: list[Task], how: Placing) -> list[Task]:
    """place(), then what the pool does with its choice."""
    batches, left = place(kids, kids, tasks, how)
    for kid in kids:
        kid.pending.update((t.job_id, t) for t in batches.get(id(kid), []))
    return left


def queues_of(kid: Any) -> set[str]:
    return {t.queue for t in kid.pending.values()}


def test_a_capped_queue_stays_in_its_child_and_the_others_spread() -> None:
    kids = children(3)
    how = Placing(concurrency=500, max_jobs_per_process=0, kinds={}, caps={"flood": 1})
    left = hand_over(kids, [task(i, "flood") for i in range(6)], how)
    assert left == []
    assert sum(1 for k in kids if "flood" in queues_of(k)) == 1  # one child, all six
    assert hand_over(kids, [task(10 + i, "other") for i in range(4)], how) == []
    assert [queues_of(k) for k in kids].count({"other"}) == 2  # the two free children


def test_a_capped_queues_async_tasks_share_its_child_up_to_the_concurrency() -> None:
    kids = children(2)
    how = Placing(concurrency=3, max_jobs_per_process=0, kinds={"A": ASYNC}, caps={"flood": 1})
    hand_over(kids, [task(i, "flood", "A") for i in range(5)], how)
    (holder,) = [k for k in kids if k.pending]
    assert len(holder.pending) == 5 and len(holder.in_async) == 3  # the rest queue as sync


def test_once_its_child_is_done_a_capped_queue_may_go_to_another_child() -> None:
    first, second = kids = children(2)
    how = Placing(concurrency=500, max_jobs_per_process=0, kinds={}, caps={"flood": 1})
    first.pending = {1: task(1, "flood")}
    second.pending = {2: task(2, "other"), 3: task(3, "other")}
    hand_over(kids, [task(4, "flood")], how)
    assert set(first.pending) == {1, 4}  # the busier child, as it holds flood
    first.pending = {5: task(5, "other"), 6: task(6, "other"), 7: task(7, "other")}
    hand_over(kids, [task(8, "flood")], how)
    assert 8 in second.pending  # nobody holds flood now: the least loaded child takes it


def test_a_capped_queues_task_whose_children_cannot_take_it_is_given_back() -> None:
    kids = children(2)
    how = Placing(concurrency=500, max_jobs_per_process=1, kinds={}, caps={"flood": 1})
    assert hand_over(kids, [task(1, "flood"), task(2, "flood")], how) == [task(2, "flood")]


def test_a_chain_of_a_capped_queue_stays_in_one_of_its_children() -> None:
    kids = children(3)
    how = Placing(concurrency=500, max_jobs_per_process=0, kinds={}, caps={"flood": 2})
    chain = [task(i, "flood", gates=("g",)) for i in range(4)]
    assert hand_over(kids, [*chain, task(9, "flood")], how) == []
    assert sorted(len(k.pending) for k in kids) == [0, 1, 4]
    # A chain whose earlier task sits in a child that may not take the queue waits.
    kids = children(3)
    kids[0].pending = {20: task(20, "other", gates=("h",))}
    kids[1].pending = {21: task(21, "flood")}
    kids[2].pending = {22: task(22, "flood")}  # flood is in its two children already
    assert hand_over(kids, [task(23, "flood", gates=("h",))], how) == [
        task(23, "flood", gates=("h",))
    ]


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("submit"), st.lists(st.sampled_from(["a", "b", "c"]), max_size=8)),
            st.tuples(st.just("end"), st.integers(0, 40)),
        ),
        max_size=30,
    ),
    caps=st.dictionaries(st.sampled_from(["a", "b"]), st.integers(1, 3)),
    n=st.integers(1, 4),
)
def test_a_capped_queue_is_never_in_more_children_than_its_share(
    steps: list[tuple[str, Any]], caps: dict[str, int], n: int
) -> None:
    kids = children(n)
    how = Placing(concurrency=500, max_jobs_per_process=0, kinds={}, caps=caps)
    ids = iter(range(10_000))
    for op, arg in steps:
        if op == "submit":
            left = hand_over(kids, [task(next(ids), q) for q in arg], how)
            assert all(t.queue in caps for t in left)  # an uncapped task always finds a child
        else:
            pending = [(k, i) for k in kids for i in k.pending]
            if pending:
                kid, job_id = pending[arg % len(pending)]
                del kid.pending[job_id]
        for queue, held in holders(kids, caps).items():
            assert len(held) <= caps[queue]


class FakeStore:
    """The two calls a claim lane makes, with ``ready`` jobs per queue."""

    is_postgresql = False

    def __init__(self, ready: dict[str, int]) -> None:
        self.ready = ready
        self.claims: list[tuple[tuple[str, ...], int]] = []
        self.looked_up: list[list[str]] = []

    def job_claim_many(self, *, queues: Any, limit: int, **_: Any) -> list[Any]:
        self.claims.append((tuple(queues), limit))
        jobs = []
        for queue in queues:
            take = min(self.ready.get(queue, 0), limit - len(jobs))
            self.ready[queue] = self.ready.get(queue, 0) - take
            jobs += [SimpleNamespace(queue=queue)] * take
        return jobs

    def job_next_run_at(self, queues: Any, names: claims.Names | None = None) -> datetime | None:
        assert names is None  # no async job here: a claim is never split by kind
        self.looked_up.append(list(queues))
        return None


def test_a_worker_with_shares_claims_per_queue_group_and_looks_up_only_what_came_short() -> None:
    store: Any = FakeStore({"flood": 100, "other": 1})
    rooms = [shares.Room(2, frozenset({"flood"})), shares.Room(2), shares.Room(2)]
    lane = ClaimLane(store, ["flood", "other"], "w", caps={"flood": 1}, rooms=lambda: rooms)
    assert lane.claimable(6) == 6
    assert lane.claim(6, datetime.now(UTC), inline=True)
    outcome = lane.take()
    assert isinstance(outcome, Claimed) and outcome.asked == 6
    assert [j.queue for j in outcome.jobs] == ["flood", "flood", "other"]
    assert store.claims == [(("flood",), 2), (("other",), 4)]
    assert lane.look_up(inline=True)
    # Only "other" came short: flood has jobs ready that its child has no room for.
    assert lane.take() == NextReady(None) and store.looked_up == [["other"]]

    rooms = [shares.Room(0, frozenset({"flood"})), shares.Room(2), shares.Room(2)]
    only_flood = ClaimLane(store, ["flood"], "w", caps={"flood": 1}, rooms=lambda: rooms)
    assert only_flood.claimable(4) == 0  # its child is full: the worker does not claim


def test_a_stopping_child_that_still_holds_a_capped_queue_leaves_it_no_room() -> None:
    pool = ProcessPool(ChildConfig((), (), ""), max_processes=2, caps={"flood": 1})
    none: Any = None
    recycled, fresh = (
        _Child(process=SimpleNamespace(pid=pid), conn=none, sock=none, ready=True) for pid in (1, 2)
    )
    recycled.pending = {1: task(1, "flood")}
    recycled.stopping = True  # finishing its last task before it is replaced
    pool.children = [recycled, fresh]
    rooms = pool.share_rooms()
    assert rooms == [shares.Room(0, frozenset({"flood"})), shares.Room(10)]
    # Claiming flood now would only hand its jobs back: the one child it may use is leaving.
    assert shares.room_for("flood", 1, rooms) == 0
    assert shares.room_for("other", 1, rooms) == 10


class KindStore:
    """The claim lane's two calls, with ready jobs by name (in claim order) per queue."""

    is_postgresql = False

    def __init__(self, ready: list[str]) -> None:
        self.ready = ready
        self.claims: list[tuple[int, claims.Names | None]] = []
        self.looked_up: list[claims.Names | None] = []

    def job_claim_many(self, *, limit: int, names: claims.Names | None = None, **_: Any) -> Any:
        self.claims.append((limit, names))
        fits = [
            i
            for i, name in enumerate(self.ready)
            if names is None or (name in names.names) == names.among
        ][:limit]
        taken = [SimpleNamespace(name=self.ready[i]) for i in fits]
        self.ready = [name for i, name in enumerate(self.ready) if i not in fits]
        return taken

    def job_next_run_at(self, queues: Any, names: claims.Names | None = None) -> None:
        self.looked_up.append(names)


def kinds_lane(store: Any, room: claims.FreeRoom) -> ClaimLane:
    return ClaimLane(store, [], "w", kinds=lambda: room)


def test_a_claim_with_async_names_known_takes_sync_jobs_only_for_the_sync_room() -> None:
    store: Any = KindStore(["Slow"] * 200 + ["Fetch"] * 3)
    rooms = [claims.FreeRoom(sync=20, async_=1000, async_names=frozenset({"Fetch"}))]
    lane = ClaimLane(store, [], "w", kinds=lambda: rooms[-1])
    assert lane.claim(255, datetime.now(UTC), inline=True)
    outcome = lane.take()
    assert isinstance(outcome, Claimed)
    assert [j.name for j in outcome.jobs] == ["Slow"] * 20 + ["Fetch"] * 3  # not 200 Slow
    only, others = claims.Names(("Fetch",), True), claims.Names(("Fetch",), False)
    assert store.claims == [(20, others), (235, only)]
    assert outcome.more  # the sync part filled up: more may be ready
    # Nothing came of the async part: a look-up asks about async jobs only (slow sync jobs
    # ready now would make the worker claim again and again for slots it has no room in).
    rooms.append(claims.FreeRoom(0, 997, frozenset({"Fetch"})))  # the sync room is full
    # The async part came back short while the sync part filled up: it is left out for a
    # while (it would read through the sync backlog again to find nothing).
    assert lane.claim(124, datetime.now(UTC), inline=True)
    assert lane.take() == Claimed([], 0, False) and len(store.claims) == 2
    # Nothing filled up this time: the next claim asks for async jobs again. Nothing of them
    # came: a look-up asks about async jobs only (slow sync jobs ready now would make the
    # worker claim again and again for slots it has no room in).
    assert lane.claim(124, datetime.now(UTC), inline=True)
    assert lane.take() == Claimed([], 124, False) and store.claims[2:] == [(124, only)]
    assert lane.look_up(inline=True)
    assert lane.take() == NextReady(None) and store.looked_up == [only]


def test_a_pure_async_drain_claims_again_at_once_and_reads_no_backlog_for_sync_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    room = claims.FreeRoom(20, 1000, frozenset({"Fetch"}))
    only, others = claims.Names(("Fetch",), True), claims.Names(("Fetch",), False)
    store: Any = KindStore(["Fetch"] * 1000)
    lane = kinds_lane(store, room)
    for _ in range(3):
        assert lane.claim(255, datetime.now(UTC), inline=True)
        outcome = lane.take()
        assert isinstance(outcome, Claimed) and len(outcome.jobs) == 255 and outcome.more
    # No sync job was ready: the sync part is left out while the async part fills up.
    assert store.claims == [(20, others)] + [(255, only)] * 3

    # At most for claims.DRY_SECONDS: a sync job enqueued meanwhile is claimed after that.
    monkeypatch.setattr(claims, "DRY_SECONDS", -1.0)
    store = KindStore(["Fetch"] * 1000)
    lane = kinds_lane(store, room)
    for _ in range(2):
        assert lane.claim(255, datetime.now(UTC), inline=True)
        lane.take()
    assert store.claims == [(20, others), (255, only)] * 2


def test_a_lane_told_nothing_of_kinds_claims_as_before() -> None:
    store: Any = KindStore(["Slow"] * 5 + ["Fetch"])
    lane = ClaimLane(store, [], "w")
    assert lane.claim(10, datetime.now(UTC), inline=True)
    outcome = lane.take()
    assert isinstance(outcome, Claimed) and len(outcome.jobs) == 6 and not outcome.more
    assert store.claims == [(10, None)]
    assert lane.look_up(inline=True)
    assert lane.take() == NextReady(None) and store.looked_up == [None]
