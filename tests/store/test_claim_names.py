"""A claim split by kind (issue 19): with names given, ``job_claim_many`` takes only the jobs
the name filter lets through (``claims.Names``: only those names, or every other name), in
claim order, on SQLite and PostgreSQL, plain and through the limits; and the look-up of the
next ready job filters the same way."""

from __future__ import annotations

import pytest

from corequeue.core import claims
from corequeue.store.queries import Store
from testing.store_support import T0, at, claim, insert, new_job

ASYNC = ("app.Fetch", "app.Ping")
ONLY_ASYNC = claims.Names(ASYNC, among=True)
NOT_ASYNC = claims.Names(ASYNC, among=False)


def mixed(store: Store) -> dict[str, list[int]]:
    """Sync and async jobs interleaved, with priorities: their ids by kind, in claim order."""
    jobs = [
        new_job("app.Fetch"),
        new_job("app.Slow"),
        new_job("app.Ping", priority=5),
        new_job("app.Unknown"),
        new_job("app.Slow", priority=5),
        new_job("app.Fetch"),
        new_job("app.Slow"),
    ]
    ids = insert(store, *jobs)
    order = [ids[2], ids[4], ids[0], ids[1], ids[3], ids[5], ids[6]]  # priority, then id
    by_name = dict(zip(ids, [j.name for j in jobs], strict=True))
    return {
        "async": [i for i in order if by_name[i] in ASYNC],
        "sync": [i for i in order if by_name[i] not in ASYNC],
    }


@pytest.mark.parametrize("limited", [False, True], ids=["plain", "through-limits"])
def test_each_part_takes_only_its_kind_in_claim_order(store: Store, limited: bool) -> None:
    if limited:  # any limit makes every claim go through the limits (store.flow)
        store.queue_configure({"elsewhere": (1, None)}, now=T0)
    ids = mixed(store)
    sync = claim(store, names=NOT_ASYNC, limit=2)
    assert [j.id for j in sync] == ids["sync"][:2]
    assert [j.id for j in claim(store, names=ONLY_ASYNC, limit=100)] == ids["async"]
    assert claim(store, names=ONLY_ASYNC, limit=100) == []  # no async job left: none taken
    # Unknown names count as sync: the rest of the sync jobs, and nothing else.
    rest = claim(store, names=NOT_ASYNC, limit=100)
    assert [j.id for j in rest] == ids["sync"][2:]
    assert {j.name for j in [*sync, *rest]} == {"app.Slow", "app.Unknown"}


def test_without_names_a_claim_takes_every_kind(store: Store) -> None:
    ids = mixed(store)
    assert sorted(j.id for j in claim(store, limit=100)) == sorted(ids["sync"] + ids["async"])


def test_a_part_keeps_to_the_workers_queues(store: Store) -> None:
    insert(store, new_job("app.Fetch", queue="mail"), new_job("app.Slow", queue="mail"))
    (fetch,) = insert(store, new_job("app.Fetch"))
    (slow,) = insert(store, new_job("app.Slow"))
    assert [j.id for j in claim(store, queues=["default"], names=ONLY_ASYNC)] == [fetch]
    assert [j.id for j in claim(store, queues=["default"], names=NOT_ASYNC)] == [slow]


def test_the_next_ready_look_up_filters_by_name_too(store: Store) -> None:
    insert(store, new_job("app.Slow"), new_job("app.Fetch", run_at=at(30)))
    assert store.job_next_run_at([], ONLY_ASYNC) == at(30)
    assert store.job_next_run_at([], NOT_ASYNC) == T0
    assert store.job_next_run_at(["default"], claims.Names(("app.Slow",), among=True)) == T0
    assert store.job_next_run_at([]) == T0
    claim(store, names=NOT_ASYNC)
    assert store.job_next_run_at([], NOT_ASYNC) is None


def test_a_part_stays_within_the_queues_limit_and_chains(store: Store) -> None:
    store.queue_configure({"default": (1, None)}, now=T0)
    ids = mixed(store)
    chain = claim(store, names=ONLY_ASYNC, chain_depth=10)
    assert [j.id for j in chain] == ids["async"]  # one chain in the queue's one slot
    assert len({j.gates for j in chain}) == 1 and chain[0].gates
    assert claim(store, names=NOT_ASYNC, worker="worker-2") == []  # the slot is taken
