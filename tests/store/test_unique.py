"""Unique keys in the store, on SQLite and PostgreSQL: how long each policy (unique_until)
holds a key, what each on_conflict does about a holder, enqueue_many job by job, and a
person's retry."""

from __future__ import annotations

import dataclasses
import json

import pytest
import sqlalchemy as sa

from corequeue.core.errors import DuplicateJob, UniqueViolation
from corequeue.core.lifecycle import Action
from corequeue.core.states import JobState, Outcome
from corequeue.core.uniqueness import OnConflict
from corequeue.store import schema
from corequeue.store.queries import Store
from corequeue.store.records import NewJob
from testing.store_support import EMPTY_PARAMS, T0, at, claim, ending, new_job


def unique(
    key: str = "k",
    until: str = "finished",
    on_conflict: OnConflict = OnConflict.KEEP,
    *,
    arg: int = 0,
    run_at: float = 0,
    name: str = "tests.Job",
) -> NewJob:
    job = new_job(name, unique_key=key, run_at=at(run_at), params=params(arg))
    return dataclasses.replace(job, unique_until=until, on_conflict=on_conflict)


def params(arg: int) -> str:
    return json.dumps({"args": [arg], "kwargs": {}})


def enqueue(store: Store, *jobs: NewJob, now: float = 0) -> list[tuple[int, bool]]:
    """(id, deduplicated) of each job."""
    return [(i.id, not i.inserted) for i in store.job_insert_many(list(jobs), now=at(now))]


def finish(store: Store, outcome: Outcome = Outcome.SUCCEEDED, *, now: float) -> list[int]:
    jobs = claim(store, now=at(now))
    store.job_finish_many([ending(j, outcome, now=at(now)) for j in jobs])
    return [j.id for j in jobs]


def holds(store: Store) -> dict[int, str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.jobs.c.id, schema.jobs.c.unique_hold))
        return {r.id: r.unique_hold for r in rows}


# -- how long a key holds -------------------------------------------------------------------


def test_started_holds_while_waiting_and_frees_the_key_at_the_start(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(until="started"))
    assert enqueue(store, unique(until="started"), now=1) == [(first, True)]
    (job,) = claim(store, now=at(2))
    ((second, dedup),) = enqueue(store, unique(until="started"), now=3)
    assert second != first and not dedup
    # The first job, back to wait for a retry, does not take the key again.
    store.job_finish_many([ending(job, Outcome.ERRORED, now=at(4))])
    assert holds(store) == {first: "", second: "k"}


def test_finished_holds_while_waiting_or_running_and_across_retries(store: Store) -> None:
    ((first, _),) = enqueue(store, new_job(unique_key="k", retries=1))
    (job,) = claim(store, now=at(1))
    assert enqueue(store, unique(), now=2) == [(first, True)]
    store.job_finish_many([ending(job, Outcome.ERRORED, now=at(3))])  # waits for its retry
    assert enqueue(store, unique(), now=4) == [(first, True)]
    assert finish(store, Outcome.ERRORED, now=5) == [first]  # failed
    ((second, dedup),) = enqueue(store, unique(), now=6)
    assert second != first and not dedup


@pytest.mark.parametrize("outcome", [Outcome.SUCCEEDED, Outcome.ERRORED])
def test_a_period_holds_that_long_after_the_ending(store: Store, outcome: Outcome) -> None:
    ((first, _),) = enqueue(store, unique(until="10m"))
    assert finish(store, outcome, now=60) == [first]
    assert enqueue(store, unique(), now=60 + 599) == [(first, True)]
    ((second, dedup),) = enqueue(store, unique(), now=60 + 600)
    assert second != first and not dedup
    assert holds(store) == {first: "", second: "k"}


def test_a_cancelled_job_holds_its_period_too_and_deleting_it_frees_the_key(
    store: Store,
) -> None:
    ((first, _),) = enqueue(store, unique(until="1h"))
    store.job_cancel(first, now=at(1))
    assert enqueue(store, unique(), now=2) == [(first, True)]
    assert store.job_delete(first)
    ((second, dedup),) = enqueue(store, unique(), now=3)
    assert second != first and not dedup


def test_the_holder_s_own_policy_decides_not_the_newcomer_s(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(until="finished"))
    finish(store, now=1)
    ((second, _),) = enqueue(store, unique(until="1h"), now=2)  # first holds no period
    assert second != first
    finish(store, now=3)
    assert enqueue(store, unique(until="finished"), now=4) == [(second, True)]


def test_keys_are_per_job_name(store: Store) -> None:
    results = enqueue(store, unique(name="tests.A"), unique(name="tests.B"))
    assert [dedup for _, dedup in results] == [False, False]


# -- on_conflict ----------------------------------------------------------------------------


def test_keep_returns_the_holder_unchanged(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(arg=1, run_at=10))
    assert enqueue(store, unique(arg=2, run_at=20), now=1) == [(first, True)]
    job = store.job_get(first)
    assert job is not None and (job.params, job.run_at) == (params(1), at(10))


def test_replace_gives_a_waiting_holder_the_new_arguments_and_run_time(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(on_conflict=OnConflict.REPLACE, arg=1, run_at=10))
    for arg, run_at in ((2, 20), (3, 15)):
        replace = unique(on_conflict=OnConflict.REPLACE, arg=arg, run_at=run_at)
        assert enqueue(store, replace, now=1) == [(first, True)]
    job = store.job_get(first)
    assert job is not None and (job.params, job.run_at) == (params(3), at(15))
    assert len(store.job_list()) == 1


def test_replace_keeps_a_running_holder_as_it_is(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(arg=1))
    claim(store, now=at(1))
    assert enqueue(store, unique(on_conflict=OnConflict.REPLACE, arg=2), now=2) == [(first, True)]
    job = store.job_get(first)
    assert job is not None and job.params == params(1)


def test_replace_under_started_adds_a_job_beside_a_running_one(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(until="started", arg=1))
    claim(store, now=at(1))
    replace = unique(until="started", on_conflict=OnConflict.REPLACE, arg=2)
    ((second, dedup),) = enqueue(store, replace, now=2)
    assert second != first and not dedup


def test_raise_raises_duplicate_job_and_inserts_nothing(store: Store) -> None:
    ((first, _),) = enqueue(store, unique())
    with pytest.raises(DuplicateJob, match=rf"job {first} \(tests.Job\) holds the unique key 'k'"):
        enqueue(store, unique(on_conflict=OnConflict.RAISE), now=1)
    with pytest.raises(DuplicateJob) as caught:
        enqueue(store, unique(key="free"), unique(on_conflict=OnConflict.RAISE), now=1)
    assert caught.value.job_id == first and isinstance(caught.value, UniqueViolation)
    assert [j.id for j in store.job_list()] == [first]  # nor the batch's first job


def test_raise_in_a_batch_leaves_the_caller_s_transaction_as_it_was(store: Store) -> None:
    ((first, _),) = enqueue(store, unique())
    with store.engine.connect() as conn, conn.begin():
        (mine,) = store.job_insert_many([new_job()], now=T0, connection=conn)
        with pytest.raises(DuplicateJob):
            batch = [unique(key="free"), unique(on_conflict=OnConflict.RAISE)]
            store.job_insert_many(batch, now=T0, connection=conn)
        (after,) = store.job_insert_many([unique(key="free")], now=T0, connection=conn)
    assert sorted(j.id for j in store.job_list()) == [first, mine.id, after.id]


def test_enqueue_many_decides_each_job_by_its_own_key_and_policy(store: Store) -> None:
    ((held, _),) = enqueue(store, unique(key="a", arg=1))
    results = enqueue(
        store,
        unique(key="a", arg=2),  # kept: the holder
        unique(key="b", arg=3),  # new
        unique(key="b", on_conflict=OnConflict.REPLACE, arg=4),  # the job just added
        unique(key="a", on_conflict=OnConflict.REPLACE, arg=5),
        new_job(),  # no key
        now=1,
    )
    b = results[1][0]
    assert results == [(held, True), (b, False), (b, True), (held, True), (results[4][0], False)]
    by_id = {j.id: j.params for j in store.job_list()}
    assert by_id == {held: params(5), b: params(4), results[4][0]: EMPTY_PARAMS}


# -- a person's retry -----------------------------------------------------------------------


def test_a_retried_job_takes_its_key_again(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(until="finished"))
    finish(store, Outcome.ERRORED, now=1)
    ((second, _),) = enqueue(store, unique(), now=2)  # clears the failed job's hold
    store.job_cancel(second, now=at(3))
    store.job_retry(first, now=at(4))  # the cancelled second job's hold was stale
    assert holds(store) == {first: "k", second: ""}
    assert enqueue(store, unique(), now=5) == [(first, True)]


def test_a_retry_is_refused_while_a_job_in_its_period_holds_the_key(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(until="finished"))
    finish(store, Outcome.ERRORED, now=1)
    ((second, _),) = enqueue(store, unique(until="1h"), now=2)
    finish(store, now=3)
    with pytest.raises(UniqueViolation, match="unique key 'k'"):
        store.job_retry(first, now=at(4))
    assert store.job_act_many([first], Action.RETRY, now=at(4)) == (0, 1)
    store.job_retry(first, now=at(3 + 3600))  # the period is over
    assert holds(store) == {first: "k", second: ""}


def test_a_retried_started_job_waits_without_its_key(store: Store) -> None:
    ((first, _),) = enqueue(store, unique(until="started"))
    finish(store, Outcome.ERRORED, now=1)
    ((second, _),) = enqueue(store, unique(until="started"), now=2)
    assert store.job_retry(first, now=at(3)).state is JobState.REQUESTED
    assert holds(store) == {first: "", second: "k"}


def test_a_started_job_cancelled_before_it_started_takes_its_key_back_on_retry(
    store: Store,
) -> None:
    ((first, _),) = enqueue(store, unique(until="started"))
    store.job_cancel(first, now=at(1))
    ((second, _),) = enqueue(store, unique(until="started"), now=2)
    with pytest.raises(UniqueViolation, match="holds the unique key 'k'"):
        store.job_retry(first, now=at(3))  # it would wait for its first start beside second
    store.job_cancel(second, now=at(4))
    store.job_retry(first, now=at(5))
    assert holds(store) == {first: "k", second: ""}
    assert enqueue(store, unique(until="started"), now=6) == [(first, True)]
