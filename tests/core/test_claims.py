"""The claim rule: which waiting jobs are ready, the order they are claimed in, and how a
worker with async slots splits a claim by kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corequeue.core import claims
from corequeue.core.states import JobState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Job(NamedTuple):
    id: int
    priority: int
    run_at: datetime


@pytest.mark.parametrize("state", [s for s in JobState if s is not JobState.REQUESTED])
def test_only_waiting_jobs_are_ready(state: JobState) -> None:
    assert not claims.is_ready(state, NOW, "default", now=NOW, queues=())
    assert claims.is_ready(JobState.REQUESTED, NOW, "default", now=NOW, queues=())


def test_a_job_is_ready_once_its_run_time_has_come() -> None:
    later = NOW + timedelta(microseconds=1)
    assert not claims.is_ready(JobState.REQUESTED, later, "default", now=NOW, queues=())
    assert claims.is_ready(JobState.REQUESTED, later, "default", now=later, queues=())


def test_a_worker_takes_only_its_queues_and_every_queue_when_it_names_none() -> None:
    ready = JobState.REQUESTED
    assert claims.is_ready(ready, NOW, "mail", now=NOW, queues=("mail", "sms"))
    assert not claims.is_ready(ready, NOW, "default", now=NOW, queues=("mail",))
    assert claims.is_ready(ready, NOW, "anything", now=NOW, queues=())


def test_claim_order_is_priority_then_run_at_then_id() -> None:
    early, late = NOW - timedelta(seconds=1), NOW
    jobs = [Job(5, 0, early), Job(4, 1, late), Job(3, 1, early), Job(2, 1, early)]
    assert [j.id for j in sorted(jobs, key=claims.claim_key)] == [2, 3, 4, 5]


def test_the_key_follows_the_declared_order() -> None:
    assert [name for name, _ in claims.CLAIM_ORDER] == ["priority", "run_at", "id"]
    assert [descending for _, descending in claims.CLAIM_ORDER] == [True, False, False]


# -- the split by kind (a worker with async slots: issue 19) -------------------------------

ASYNC_NAMES = frozenset({"app.Fetch", "app.Ping"})
ONLY_ASYNC = claims.Names(("app.Fetch", "app.Ping"), among=True)
NOT_ASYNC = claims.Names(("app.Fetch", "app.Ping"), among=False)


def test_with_no_name_known_async_a_claim_is_one_part_of_any_jobs() -> None:
    assert claims.by_kind(40, claims.FreeRoom(20, 1000)) == [claims.Part(40)]
    assert claims.by_kind(40, claims.FreeRoom(40, 0)) == [claims.Part(40)]
    assert claims.by_kind(0, claims.FreeRoom(40, 0)) == []


def test_known_async_names_split_a_claim_sync_room_first_then_async_room() -> None:
    room = claims.FreeRoom(20, 1000, ASYNC_NAMES)
    # The sync room from every job but the async names' (unknown names count as sync), the
    # async room from those names only; the names sorted, so the filter is stable.
    assert claims.by_kind(255, room) == [
        claims.Part(20, NOT_ASYNC),
        claims.Part(255, ONLY_ASYNC),
    ]


def test_a_part_never_asks_more_than_its_kinds_free_room_nor_the_claim() -> None:
    assert claims.by_kind(10, claims.FreeRoom(20, 5, ASYNC_NAMES)) == [
        claims.Part(10, NOT_ASYNC),
        claims.Part(5, ONLY_ASYNC),
    ]
    # A kind with no room left is not asked for at all: slow sync jobs wait in the database,
    # where another worker may take them, not in this worker's async slots.
    assert claims.by_kind(100, claims.FreeRoom(0, 500, ASYNC_NAMES)) == [
        claims.Part(100, ONLY_ASYNC)
    ]
    assert claims.by_kind(100, claims.FreeRoom(8, 0, ASYNC_NAMES)) == [claims.Part(8, NOT_ASYNC)]
    assert claims.by_kind(100, claims.FreeRoom(0, 0, ASYNC_NAMES)) == []


def test_each_part_is_lowered_by_what_the_parts_before_it_took() -> None:
    sync, async_ = claims.by_kind(30, claims.FreeRoom(20, 1000, ASYNC_NAMES))
    assert claims.part_limit(sync, 30, 0) == 20
    assert claims.part_limit(async_, 30, 20) == 10  # the sync part filled its room
    assert claims.part_limit(async_, 30, 3) == 27  # few sync jobs ready: the rest is async
    assert claims.part_limit(async_, 30, 30) == 0


def test_the_room_left_counts_what_each_kind_took() -> None:
    room = claims.FreeRoom(20, 1000, ASYNC_NAMES)
    sync, async_ = claims.by_kind(255, room)
    assert room.took(sync, 7) == claims.FreeRoom(13, 1000, ASYNC_NAMES)
    assert room.took(async_, 255) == claims.FreeRoom(20, 745, ASYNC_NAMES)
    assert room.took(claims.Part(40), 40) == room  # today's claim: no kind to count


@given(
    ask=st.integers(0, 2000),
    sync=st.integers(0, 100),
    free_async=st.integers(0, 2000),
    names=st.frozensets(st.sampled_from(["a", "b", "c"])),
    found=st.lists(st.integers(0, 2000), min_size=2, max_size=2),
)
def test_a_split_claim_never_takes_more_of_a_kind_than_its_room_nor_more_than_asked(
    ask: int, sync: int, free_async: int, names: frozenset[str], found: list[int]
) -> None:
    room = claims.FreeRoom(sync, free_async, names)
    took = {True: 0, False: 0}
    claimed = 0
    for part, ready in zip(claims.by_kind(ask, room), found, strict=False):
        got = min(claims.part_limit(part, ask, claimed), ready)  # the jobs ready of that part
        claimed += got
        if part.names is None:
            assert not names
        else:
            assert part.names.names == tuple(sorted(names))
            took[part.names.among] += got
    assert claimed <= ask
    if names:
        assert took[False] <= sync and took[True] <= free_async


def test_a_part_that_came_back_short_while_the_other_filled_up_is_left_out_a_while() -> None:
    sync, async_ = claims.by_kind(255, claims.FreeRoom(20, 1000, ASYNC_NAMES))
    # A pure async drain: no sync job ready, the async part full.
    assert claims.dry_parts([(sync, False), (async_, True)]) == {False}
    assert claims.by_kind(255, claims.FreeRoom(20, 1000, ASYNC_NAMES), frozenset({False})) == [
        claims.Part(255, ONLY_ASYNC)
    ]
    # Slow sync jobs filling the sync room, no async job ready.
    assert claims.dry_parts([(sync, True), (async_, False)]) == {True}
    # Both short (nothing more ready) or both full: nothing is left out.
    assert claims.dry_parts([(sync, False), (async_, False)]) == frozenset()
    assert claims.dry_parts([(sync, True), (async_, True)]) == frozenset()
    assert claims.dry_parts([(claims.Part(40), False)]) == frozenset()  # no split


def test_a_kind_left_out_stays_out_only_while_the_parts_made_fill_up() -> None:
    _, async_ = claims.by_kind(255, claims.FreeRoom(20, 1000, ASYNC_NAMES))
    assert claims.dry_parts([(async_, True)], frozenset({False})) == {False}
    assert claims.dry_parts([(async_, False)], frozenset({False})) == frozenset()
    assert claims.dry_parts([], frozenset({False})) == frozenset()  # nothing was asked


def test_more_may_be_ready_when_every_claim_filled_or_split_by_kind_when_one_did() -> None:
    assert claims.more_ready([True, True], split=False)
    assert not claims.more_ready([True, False], split=False)  # a queue group came back short
    assert claims.more_ready([True, False], split=True)  # one kind still fills its room
    assert not claims.more_ready([False, False], split=True)
    assert claims.more_ready([], split=False)  # nothing asked: as before, look again
