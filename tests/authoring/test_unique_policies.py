"""Uniqueness policies through the public API (issue 21), on SQLite and PostgreSQL:
unique_until and on_conflict per call, as class defaults and as function-job options;
handle.deduplicated; corequeue.DuplicateJob; enqueue_many job by job; the pytest plugin."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import corequeue
from corequeue import DuplicateJob, JobParamsError, JobState
from corequeue.scheduler import Scheduler
from corequeue.store.queries import Store
from corequeue.store.schedules import schedule_list
from testing import unique_jobs as uj
from testing.jobs import Add
from tests.scheduler.conftest import definitions

nightly_every_minute = {"job": "testing.unique_jobs.nightly_export", "cron": "* * * * *"}


def params_of(store: Store, job_id: int) -> object:
    job = store.job_get(job_id)
    assert job is not None
    return json.loads(job.params)


def test_per_call_policies_and_deduplicated(store: Store) -> None:
    first = Add(1, 2).run_in_worker(unique_key="k")
    assert first.deduplicated is False
    kept = Add(5, 5).run_in_worker(unique_key="k")
    assert (kept.id, kept.deduplicated) == (first.id, True)
    replaced = Add(7, 8).run_in_worker(unique_key="k", on_conflict="replace", delay=60)
    assert (replaced.id, replaced.deduplicated) == (first.id, True)
    assert params_of(store, first.id) == {"args": [7, 8], "kwargs": {}}
    job = store.job_get(first.id)
    assert job is not None
    assert job.run_at > datetime.now(UTC) + timedelta(seconds=50)
    with pytest.raises(DuplicateJob, match=f"job {first.id} .* holds the unique key 'k'"):
        Add(9, 9).run_in_worker(unique_key="k", on_conflict="raise")
    assert [j.id for j in store.job_list()] == [first.id]
    assert job.unique_until == "finished"
    other = Add(1, 2).run_in_worker(unique_key="k2", unique_until="10m")
    assert store.job_get(other.id).unique_until == "10m"  # type: ignore[union-attr]


def test_class_defaults_debounce(store: Store) -> None:
    handles = [uj.Reindex("a", v).run_in_worker() for v in range(5)]
    assert len({h.id for h in handles}) == 1
    assert [h.deduplicated for h in handles] == [False] + [True] * 4
    (job,) = store.job_list()
    assert (job.unique_key, job.unique_until) == ("reindex:a", "started")
    assert json.loads(job.params) == {"args": ["a", 4], "kwargs": {}}
    # A per-call option overrides the class's.
    kept = uj.Reindex("a", 9).run_in_worker(on_conflict="keep")
    assert kept.deduplicated and params_of(store, job.id) == json.loads(job.params)


def test_function_job_options_and_per_call_overrides(store: Store) -> None:
    first = uj.export.run_in_worker("d", 1)
    (job,) = store.job_list()
    assert (job.unique_key, job.unique_until) == ("export:d", "1h")
    assert uj.export.run_in_worker("d", 2).deduplicated
    with pytest.raises(DuplicateJob):
        uj.export.run_in_worker("d", 3, on_conflict="raise")
    assert uj.charge.run_in_worker(1, unique_key="order:1").deduplicated is False
    with pytest.raises(DuplicateJob) as caught:
        uj.charge.run_in_worker(1, unique_key="order:1")
    assert caught.value.job_id is not None and caught.value.job_id != first.id
    assert uj.charge.run_in_worker(1, unique_key="order:1", on_conflict="keep").deduplicated


def test_enqueue_many_honours_each_job_s_policy(store: Store) -> None:
    held = uj.Reindex("a", 0).run_in_worker()
    handles = corequeue.enqueue_many(
        [uj.Reindex("a", 1), uj.Reindex("b", 1), uj.Reindex("b", 2), Add(1, 1)]
    )
    assert [h.deduplicated for h in handles] == [True, False, True, False]
    assert handles[0].id == held.id and handles[1].id == handles[2].id
    assert params_of(store, held.id) == {"args": ["a", 1], "kwargs": {}}
    assert params_of(store, handles[1].id) == {"args": ["b", 2], "kwargs": {}}
    with pytest.raises(DuplicateJob):
        corequeue.enqueue_many([Add(3, 3), uj.charge.call(5), uj.charge.call(5)], unique_key="c")
    assert len(store.job_list()) == 3  # nothing of the refused batch


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("unique_until", "forever", "unique_until='forever' is not a policy"),
        ("unique_until", "0s", "unique_until='0s': a period must be over 0"),
        ("on_conflict", "overwrite", "on_conflict='overwrite' is not one of"),
    ],
)
def test_a_bad_policy_is_refused_before_anything_is_stored(
    store: Store, option: str, value: str, message: str
) -> None:
    with pytest.raises(JobParamsError, match=f"Add: {message}"):
        Add(1, 1).run_in_worker(unique_key="k", **{option: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        corequeue.job(**{option: value})
    assert store.job_list() == []


def test_a_policy_without_a_key_changes_nothing(store: Store) -> None:
    handles = [Add(1, 1).run_in_worker(on_conflict="raise", unique_until="5m") for _ in range(2)]
    assert handles[0].id != handles[1].id
    assert all(not h.deduplicated for h in handles)
    assert {j.unique_until for j in store.job_list()} == {""}
    assert {j.state for j in store.job_list()} == {JobState.REQUESTED}


def test_a_schedule_whose_job_key_is_held_keeps_the_holder_even_with_raise(store: Store) -> None:
    scheduler = Scheduler(store, definitions({"n": nightly_every_minute}))
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    for minutes in (0, 1, 2, 3):  # first seen, then three occurrences
        scheduler.run_once(start + timedelta(minutes=minutes))
    (job,) = store.job_list()
    assert job.unique_key == "nightly-export"
    (row,) = schedule_list(store)
    assert row.last_occurrence == start + timedelta(minutes=3)  # each occurrence was consumed
    assert row.last_job_id == job.id
