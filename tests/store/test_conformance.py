"""The store's contract, one suite run on SQLite and on PostgreSQL (the ``store`` fixture).

Each test starts from empty, migrated tables. Time is the tests' own clock (``T0`` plus
offsets), passed as ``now``: nothing here reads the real clock or sleeps.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import queue
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from corequeue import hooks
from corequeue.context import JobContext
from corequeue.core import lifecycle
from corequeue.core.errors import InvalidTransition, JobNotFound, UniqueViolation
from corequeue.core.states import JobState, Outcome
from corequeue.store import schema
from corequeue.store.engine import normalize_url
from corequeue.store.queries import ON_JOB_ROW, ON_JOB_ROW_STATE, Store
from corequeue.store.records import ClaimedJob, JobFilter, WorkerRecord
from testing.store_support import (
    EMPTY_PARAMS,
    T0,
    at,
    claim,
    ending,
    enqueue_unique_in_process,
    insert,
    new_job,
)


def job_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.jobs)).scalar_one())


def attempt_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(schema.attempts)).scalar_one()
        )


def state_of(store: Store, job_id: int) -> JobState:
    job = store.job_get(job_id)
    assert job is not None
    return job.state


# -- insert -----------------------------------------------------------------------------------


def test_insert_many_returns_ids_in_input_order(store: Store) -> None:
    inserted = store.job_insert_many([new_job(f"tests.Job{i}") for i in range(5)], now=T0)
    assert all(i.inserted for i in inserted)
    ids = [i.id for i in inserted]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert [store.job_get(i).name for i in ids] == [f"tests.Job{i}" for i in range(5)]  # type: ignore[union-attr]


def test_a_mixed_batch_of_plain_and_unique_jobs_keeps_the_input_order(store: Store) -> None:
    batch = [new_job(), new_job(unique_key="a"), new_job(), new_job(), new_job(unique_key="b")]
    ids = insert(store, *batch)
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


@pytest.mark.parametrize("unique_key", ["k", ""], ids=["unique", "plain"])
def test_an_inserted_job_reads_back_as_written(store: Store, unique_key: str) -> None:
    # One plain job takes PostgreSQL's short path (the driver's own connection, autocommit).
    paris = timezone(timedelta(hours=2))
    (job_id,) = insert(
        store,
        new_job(
            "tests.Send",
            queue="mail",
            priority=7,
            run_at=at(30).astimezone(paris),  # stored and read back as UTC
            retries=2,
            unique_key=unique_key,
            params='{"args":[1],"kwargs":{}}',
            timeout=2.5,
            source="app.py:12",
        ),
        now=T0,
    )
    job = store.job_get(job_id)
    assert job is not None
    assert (job.name, job.queue, job.priority, job.state) == (
        "tests.Send",
        "mail",
        7,
        JobState.REQUESTED,
    )
    assert (job.run_at, job.created_at) == (at(30), T0)
    assert job.run_at.tzinfo == UTC
    assert (job.attempts, job.max_attempts, job.timeout) == (0, 3, 2.5)
    assert (job.unique_key, job.params, job.source) == (
        unique_key,
        '{"args":[1],"kwargs":{}}',
        "app.py:12",
    )
    assert (job.lease, job.worker_id, job.finished_at, job.result) == (None, None, None, None)


def test_inserting_nothing_does_nothing(store: Store) -> None:
    assert store.job_insert_many([], now=T0) == []
    assert job_count(store) == 0


# -- unique keys ------------------------------------------------------------------------------


def test_a_second_enqueue_of_a_held_key_returns_the_existing_job(store: Store) -> None:
    (first,) = store.job_insert_many([new_job(unique_key="welcome:7")], now=T0)
    (second,) = store.job_insert_many([new_job(unique_key="welcome:7")], now=at(1))
    assert first.inserted
    assert (second.id, second.inserted) == (first.id, False)
    assert job_count(store) == 1


def test_a_key_is_held_per_job_name_and_only_when_not_empty(store: Store) -> None:
    inserted = store.job_insert_many(
        [
            new_job("tests.A", unique_key="k"),
            new_job("tests.B", unique_key="k"),
            new_job("tests.A"),
            new_job("tests.A"),
        ],
        now=T0,
    )
    assert all(i.inserted for i in inserted)
    assert job_count(store) == 4


def test_the_same_key_twice_in_one_batch_makes_one_job(store: Store) -> None:
    first, second = store.job_insert_many(
        [new_job(unique_key="k"), new_job(unique_key="k")], now=T0
    )
    assert first.inserted and not second.inserted
    assert second.id == first.id


def test_a_running_job_still_holds_its_key_and_a_finished_one_releases_it(store: Store) -> None:
    (first,) = insert(store, new_job(unique_key="k"))
    (job,) = claim(store)
    assert store.job_insert_many([new_job(unique_key="k")], now=T0)[0].id == first
    store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(1))])
    (again,) = store.job_insert_many([new_job(unique_key="k")], now=at(2))
    assert again.inserted
    assert again.id != first


def test_concurrent_enqueues_of_one_key_from_threads_make_one_job(store: Store) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    results: queue.Queue[tuple[int, bool]] = queue.Queue()

    def enqueue() -> None:
        barrier.wait(timeout=30)
        (inserted,) = store.job_insert_many([new_job(unique_key="race")], now=T0)
        results.put((inserted.id, inserted.inserted))

    workers = [threading.Thread(target=enqueue) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    outcomes = [results.get_nowait() for _ in range(results.qsize())]
    assert len(outcomes) == threads
    assert len({job_id for job_id, _ in outcomes}) == 1
    assert sum(inserted for _, inserted in outcomes) == 1
    assert job_count(store) == 1


def test_concurrent_enqueues_of_one_key_from_processes_make_one_job(
    store: Store, database_url: str
) -> None:
    processes = 3
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(
            target=enqueue_unique_in_process, args=(database_url, "race", barrier, results)
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(processes)]
    finally:
        for child in children:
            child.join(timeout=60)
    assert [child.exitcode for child in children] == [0] * processes
    assert len({job_id for job_id, _ in outcomes}) == 1
    assert sum(bool(inserted) for _, inserted in outcomes) == 1
    assert job_count(store) == 1


# -- claim ------------------------------------------------------------------------------------


def test_claim_order_is_priority_then_run_at_then_insertion(store: Store) -> None:
    low_old = insert(store, new_job(priority=-1, run_at=at(-500)))[0]
    normal_a, normal_b = insert(store, new_job(run_at=at(-300)), new_job(run_at=at(-300)))
    normal_early = insert(store, new_job(run_at=at(-400)))[0]
    high_late, high_early = insert(
        store, new_job(priority=5, run_at=at(-10)), new_job(priority=5, run_at=at(-20))
    )
    expected = [high_early, high_late, normal_early, normal_a, normal_b, low_old]
    assert [j.id for j in claim(store, limit=10)] == expected


def test_claims_in_small_batches_follow_the_same_order(store: Store) -> None:
    ids = insert(store, *[new_job(priority=i % 3, run_at=at(-i)) for i in range(9)])
    expected = sorted(ids, key=lambda i: (-(ids.index(i) % 3), -ids.index(i), i))
    claimed = []
    while batch := claim(store, limit=2):
        claimed.extend(j.id for j in batch)
    assert claimed == expected


def test_a_job_due_in_the_future_is_not_claimed_early(store: Store) -> None:
    (later,) = insert(store, new_job(run_at=at(60)))
    assert claim(store, now=at(59)) == []
    assert [j.id for j in claim(store, now=at(60))] == [later]


def test_claim_only_takes_the_queues_asked_for(store: Store) -> None:
    mail, default, reports = insert(
        store, new_job(queue="mail"), new_job(queue="default"), new_job(queue="reports")
    )
    assert [j.id for j in claim(store, queues=["mail", "reports"])] == [mail, reports]
    assert [j.id for j in claim(store, queues=["mail"])] == []
    assert [j.id for j in claim(store, queues=[])] == [default]


def test_a_claim_starts_an_attempt_under_the_lease(store: Store) -> None:
    (job_id,) = insert(store, new_job(retries=2, params='{"args":[3],"kwargs":{}}', timeout=9))
    (job,) = claim(store, now=at(5), lease="L" * 32, worker="w-9")
    assert (job.id, job.lease, job.attempts, job.max_attempts) == (job_id, "L" * 32, 1, 3)
    assert (job.params, job.timeout, job.started_at) == ('{"args":[3],"kwargs":{}}', 9, at(5))
    row = store.job_get(job_id)
    assert row is not None
    assert (row.state, row.lease, row.worker_id, row.started_at, row.attempts) == (
        JobState.RUNNING,
        "L" * 32,
        "w-9",
        at(5),
        1,
    )
    assert claim(store, now=at(6)) == []


def test_a_claim_limit_of_zero_claims_nothing(store: Store) -> None:
    insert(store, new_job())
    assert claim(store, limit=0) == []


def test_two_claimers_never_claim_the_same_job(store: Store, database_url: str) -> None:
    ids = insert(store, *[new_job() for _ in range(60)])
    other = Store.from_url(database_url)  # a second engine, as a second worker would have
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def drain(name: str, claimer: Store) -> None:
        barrier.wait(timeout=30)
        while batch := claim(claimer, limit=3, worker=name):
            claimed[name].extend(j.id for j in batch)

    threads = [
        threading.Thread(target=drain, args=("a", store)),
        threading.Thread(target=drain, args=("b", other)),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        other.dispose()
    everything = claimed["a"] + claimed["b"]
    assert sorted(everything) == ids
    assert len(set(everything)) == len(everything)


# -- finish -----------------------------------------------------------------------------------


def test_a_success_is_stored_with_its_result_and_attempt(store: Store) -> None:
    (job_id,) = insert(store, new_job())
    (job,) = claim(store, now=at(1))
    # The child started the job a little after the claim: the attempt's start is that.
    end = dataclasses.replace(
        ending(job, Outcome.SUCCEEDED, now=at(2), result='{"ok":1}'), started_at=at(1.25)
    )
    applied = store.job_finish_many([end])
    assert applied == [job_id]
    row = store.job_get(job_id)
    assert row is not None
    assert (row.state, row.result, row.started_at, row.finished_at, row.lease, row.error) == (
        JobState.SUCCEEDED,
        '{"ok":1}',
        at(1.25),
        at(2),
        None,
        None,
    )
    (attempt,) = store.attempt_list(job_id)
    assert (attempt.attempt, attempt.outcome, attempt.worker_id) == (
        1,
        Outcome.SUCCEEDED,
        "worker-1",
    )
    assert (attempt.started_at, attempt.finished_at) == (at(1.25), at(2))


def test_a_successful_attempt_is_kept_on_its_job_row_alone(store: Store) -> None:
    # A success is final, so the job row holds that attempt for good: no attempt row is
    # written for it (one INSERT less per job), and the attempt list shows it last.
    (job_id,) = insert(store, new_job(retries=1))
    (job,) = claim(store, now=at(1))
    store.job_finish_many([ending(job, Outcome.ERRORED, now=at(2), error_type="E")])
    (job,) = claim(store, now=at(3))
    store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(4))])

    assert attempt_count(store) == 1  # the error's row only
    first, second = store.attempt_list(job_id)
    assert (first.attempt, first.outcome, first.error_type) == (1, Outcome.ERRORED, "E")
    assert first.id is not None and first.lease is not None
    assert (second.id, second.attempt, second.outcome, second.lease) == (
        None,
        2,
        Outcome.SUCCEEDED,
        None,
    )
    assert (second.started_at, second.finished_at) == (at(3), at(4))


def test_the_attempt_kept_on_the_job_row_is_the_last_one_for_good() -> None:
    # The store keeps a success on its job row only because no later attempt can follow it:
    # the core's table moves a running job on that outcome to a state nothing leaves.
    assert lifecycle.next_states(JobState.RUNNING, ON_JOB_ROW) == (ON_JOB_ROW_STATE,)
    assert ON_JOB_ROW_STATE is JobState.SUCCEEDED
    assert all(state is not ON_JOB_ROW_STATE for state, _ in lifecycle.TRANSITIONS)


def test_a_success_row_written_before_attempts_moved_to_the_job_row_is_listed_once(
    store: Store,
) -> None:
    # A database written by an earlier version has an attempt row for each success too.
    (job_id,) = insert(store, new_job())
    (job,) = claim(store, now=at(1))
    end = ending(job, Outcome.SUCCEEDED, now=at(2))
    store.job_finish_many([end])
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.attempts).values(
                job_id=job_id,
                attempt=1,
                outcome="succeeded",
                lease=job.lease,
                worker_id=end.worker_id,
                started_at=at(1),
                finished_at=at(2),
            )
        )
    (attempt,) = store.attempt_list(job_id)
    assert (attempt.outcome, attempt.lease) == (Outcome.SUCCEEDED, job.lease)


def test_an_ending_keeps_its_times_to_the_microsecond(store: Store) -> None:
    # Times far from the epoch with an odd microsecond: a float timestamp in seconds cannot
    # hold every one of them (PostgreSQL's endings travel as integer microseconds).
    run_at = datetime(2023, 11, 30, 13, 59, 58, 999_999, tzinfo=UTC)
    started, ended = (
        at(0) + timedelta(microseconds=7),
        datetime(2999, 12, 31, 23, 59, 59, 999_991, tzinfo=UTC),
    )
    (job_id,) = insert(store, new_job(run_at=run_at, retries=1))
    (job,) = claim(store, now=started)
    errored = ending(job, Outcome.ERRORED, now=ended, retry_delay=0.000_003)
    store.job_finish_many([errored])

    row = store.job_get(job_id)
    (attempt,) = store.attempt_list(job_id)
    assert row is not None and row.run_at == errored.change.run_at  # the retry's, as decided
    assert (attempt.started_at, attempt.finished_at) == (started, ended)
    (job,) = claim(store, now=ended + timedelta(seconds=1))
    store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=ended + timedelta(seconds=2))])
    row = store.job_get(job_id)
    assert row is not None and row.finished_at == ended + timedelta(seconds=2)


def test_an_error_with_retries_left_waits_and_records_the_traceback(store: Store) -> None:
    (job_id,) = insert(store, new_job(retries=1))
    (job,) = claim(store, now=at(1))
    end = ending(
        job,
        Outcome.ERRORED,
        now=at(2),
        retry_delay=30,
        error_type="ValueError",
        error_message="bad input",
        traceback="Traceback (most recent call last):\n  ...\nValueError: bad input",
    )
    assert store.job_finish_many([end]) == [job_id]
    row = store.job_get(job_id)
    assert row is not None
    assert (row.state, row.run_at, row.attempts, row.lease, row.finished_at) == (
        JobState.REQUESTED,
        at(32),
        1,
        None,
        None,
    )
    assert row.error == "ValueError: bad input"
    (attempt,) = store.attempt_list(job_id)
    assert (attempt.outcome, attempt.error_type, attempt.error_message) == (
        Outcome.ERRORED,
        "ValueError",
        "bad input",
    )
    assert attempt.traceback is not None and attempt.traceback.endswith("ValueError: bad input")
    assert claim(store, now=at(31)) == []
    (second,) = claim(store, now=at(32))
    assert second.attempts == 2
    store.job_finish_many([ending(second, Outcome.ERRORED, now=at(33))])
    assert state_of(store, job_id) is JobState.FAILED
    assert [a.attempt for a in store.attempt_list(job_id)] == [1, 2]


@pytest.mark.parametrize(
    "text",
    [
        'say "hi", {1,2}; NULL',
        'back\\slash\\"quote',
        "NULL",
        "",
        "line\nbreak\ttab",
        "héllo ✓ 日本",
    ],
)
def test_the_text_of_a_batch_of_endings_is_stored_as_it_came(store: Store, text: str) -> None:
    # Results and error texts are anything a job returns or raises: quotes, braces, commas,
    # backslashes, the word NULL, nothing at all. They must come back as they went.
    ids = insert(store, new_job(), new_job(), new_job())
    a, b, c = claim(store, now=at(1))
    result = json.dumps(text)
    ends = [
        ending(a, Outcome.SUCCEEDED, now=at(2), result=result),
        ending(b, Outcome.SUCCEEDED, now=at(2)),  # no result at all
        ending(c, Outcome.ERRORED, now=at(2), error_type=text, error_message=text, traceback=text),
    ]
    assert sorted(store.job_finish_many(ends)) == ids

    rows = [store.job_get(i) for i in ids]
    assert [r.result if r else "?" for r in rows] == [result, None, None]
    (attempt,) = store.attempt_list(c.id)
    assert (attempt.error_type, attempt.error_message, attempt.traceback) == (text, text, text)
    assert rows[2] is not None and rows[2].error == (f"{text}: {text}" if text else "errored")


def test_a_result_under_a_superseded_lease_is_refused_and_writes_nothing(store: Store) -> None:
    (job_id,) = insert(store, new_job(retries=1))
    (late,) = claim(store, now=at(0), worker="slow")
    # The slow worker is declared lost; the job runs again under a new lease.
    store.job_rescue_many(now=at(600), heartbeat_timeout=60, retry_delay=lambda name, n: 0)
    (current,) = claim(store, now=at(601), worker="fast")
    attempts_before = store.attempt_list(job_id)
    assert store.job_finish_many([ending(late, Outcome.SUCCEEDED, now=at(602), result="1")]) == []
    row = store.job_get(job_id)
    assert row is not None
    assert (row.state, row.lease, row.result) == (JobState.RUNNING, current.lease, None)
    assert store.attempt_list(job_id) == attempts_before


def test_a_batch_applies_its_current_endings_and_refuses_the_stale_one(store: Store) -> None:
    first, second = insert(store, new_job(), new_job())
    a, b = claim(store)
    stale = dataclasses.replace(ending(b, Outcome.SUCCEEDED, now=at(1)), lease="not-the-lease")
    applied = store.job_finish_many([ending(a, Outcome.SUCCEEDED, now=at(1)), stale])
    assert applied == [first]
    assert (state_of(store, first), state_of(store, second)) == (
        JobState.SUCCEEDED,
        JobState.RUNNING,
    )
    assert [a.job_id for a in store.attempt_list(first) + store.attempt_list(second)] == [first]


def test_the_same_ending_twice_is_recorded_once(store: Store) -> None:
    (job_id,) = insert(store, new_job())
    (job,) = claim(store)
    end = ending(job, Outcome.SUCCEEDED, now=at(1))
    assert store.job_finish_many([end, end]) == [job_id]
    assert store.job_finish_many([end]) == []
    assert len(store.attempt_list(job_id)) == 1


def test_release_gives_the_job_back_without_using_the_attempt(store: Store) -> None:
    (job_id,) = insert(store, new_job())
    (job,) = claim(store, now=at(1))
    assert store.job_release_many([job], now=at(2)) == [job_id]
    row = store.job_get(job_id)
    assert row is not None
    assert (row.state, row.attempts, row.lease, row.run_at) == (JobState.REQUESTED, 0, None, T0)
    assert store.attempt_list(job_id) == []
    assert store.job_release_many([job], now=at(3)) == []
    (again,) = claim(store, now=at(4))
    assert again.attempts == 1


def test_leases_gone_names_the_jobs_no_longer_running_under_them(store: Store) -> None:
    insert(store, new_job(), new_job(), new_job())
    a, b, c = claim(store)
    store.job_finish_many([ending(a, Outcome.SUCCEEDED, now=at(1))])
    store.job_cancel(c.id, now=at(1))
    pairs = [(a.id, a.lease), (b.id, b.lease), (b.id, "other"), (c.id, c.lease), (404, "x")]
    # a finished, c was cancelled, 404 does not exist; b runs under its lease, not "other".
    assert set(store.job_leases_gone_many(pairs)) == {a.id, b.id, c.id, 404}
    assert set(store.job_leases_gone_many(pairs[1:2])) == set()
    assert set(store.job_leases_gone_many([])) == set()
    # Each with its job's state now: None for a job that does not exist (deleted).
    assert store.job_leases_gone_many(pairs) == {
        a.id: JobState.SUCCEEDED,
        b.id: JobState.RUNNING,
        c.id: JobState.CANCELLED,
        404: None,
    }


# -- cancel, retry, delete --------------------------------------------------------------------


def test_cancel_a_waiting_job(store: Store) -> None:
    (job_id,) = insert(store, new_job())
    job = store.job_cancel(job_id, now=at(5))
    assert (job.state, job.finished_at) == (JobState.CANCELLED, at(5))
    assert claim(store, now=at(6)) == []


def test_cancel_a_running_job_ends_its_attempt_and_refuses_its_late_result(store: Store) -> None:
    (job_id,) = insert(store, new_job(retries=3))
    (running,) = claim(store, now=at(1))
    job = store.job_cancel(job_id, now=at(5))
    assert (job.state, job.lease, job.finished_at) == (JobState.CANCELLED, None, at(5))
    (attempt,) = store.attempt_list(job_id)
    assert (attempt.outcome, attempt.lease, attempt.finished_at) == (
        Outcome.CANCELLED,
        running.lease,
        at(5),
    )
    assert store.job_finish_many([ending(running, Outcome.SUCCEEDED, now=at(6))]) == []
    assert state_of(store, job_id) is JobState.CANCELLED


def test_a_finished_job_cannot_be_cancelled(store: Store) -> None:
    (job_id,) = insert(store, new_job())
    (job,) = claim(store)
    store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(1))])
    with pytest.raises(InvalidTransition) as refused:
        store.job_cancel(job_id, now=at(2))
    assert str(refused.value) == (
        f"job {job_id} has already succeeded: only waiting or running jobs can be cancelled"
    )
    with pytest.raises(JobNotFound, match="no job with id 999999: it was deleted or pruned"):
        store.job_cancel(999999, now=at(2))


def test_retry_sends_a_failed_job_back_with_one_more_attempt(store: Store) -> None:
    (job_id,) = insert(store, new_job(run_at=at(-100)))
    (job,) = claim(store)
    store.job_finish_many([ending(job, Outcome.ERRORED, now=at(1), error_message="boom")])
    assert state_of(store, job_id) is JobState.FAILED
    retried = store.job_retry(job_id, now=at(10))
    assert (retried.state, retried.run_at, retried.finished_at) == (
        JobState.REQUESTED,
        at(10),
        None,
    )
    assert (retried.attempts, retried.max_attempts) == (1, 2)
    (again,) = claim(store, now=at(10))
    assert again.attempts == 2


def test_only_failed_or_cancelled_jobs_can_be_retried(store: Store) -> None:
    waiting, done = insert(store, new_job(), new_job(run_at=at(-1)))
    (job,) = claim(store, limit=1)
    store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(1))])
    for job_id in (waiting, done):
        with pytest.raises(InvalidTransition, match=f"^job {job_id} .*: only failed or cancel"):
            store.job_retry(job_id, now=at(2))


def test_retry_refuses_when_another_job_holds_the_unique_key(store: Store) -> None:
    (old,) = insert(store, new_job(unique_key="k"))
    store.job_cancel(old, now=at(1))
    (new,) = insert(store, new_job(unique_key="k"), now=at(2))
    assert new != old
    with pytest.raises(UniqueViolation, match=r"another tests\.Job job holds the unique key 'k'"):
        store.job_retry(old, now=at(3))
    assert state_of(store, old) is JobState.CANCELLED


def test_delete_removes_a_job_and_its_attempts_but_never_a_running_one(store: Store) -> None:
    done, running = insert(store, new_job(), new_job())
    (job,) = claim(store, limit=1)
    store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(1))])
    claim(store)
    assert store.job_delete(done)
    assert store.job_get(done) is None
    assert attempt_count(store) == 0
    with pytest.raises(InvalidTransition, match=f"^job {running} is running: cancel it first"):
        store.job_delete(running)
    assert store.job_get(running) is not None
    assert not store.job_delete(999999)


# -- reading ----------------------------------------------------------------------------------


def test_job_list_filters(store: Store) -> None:
    a = insert(store, new_job("app.Send", queue="mail", unique_key="user:one"), now=at(0))[0]
    b = insert(store, new_job("app.Report", queue="reports", unique_key="100%"), now=at(10))[0]
    c = insert(store, new_job("app.Send", queue="mail", unique_key="user:two"), now=at(20))[0]
    (running,) = claim(store, limit=1)
    assert running.id == a

    def listed(**kw: object) -> list[int]:
        return [j.id for j in store.job_list(JobFilter(**kw))]  # type: ignore[arg-type]

    assert listed() == [c, b, a]
    assert listed(states=(JobState.RUNNING,)) == [a]
    assert listed(queues=("reports",)) == [b]
    assert listed(names=("app.Send",)) == [c, a]
    assert listed(search="user:") == [c, a]
    assert listed(search="Report") == [b]
    assert listed(search="%") == [b]  # a literal percent sign, not a wildcard
    assert listed(search=str(b)) == [b]
    assert listed(created_after=at(10)) == [c, b]
    assert listed(created_before=at(10)) == [a]
    assert listed(states=(JobState.REQUESTED,), queues=("mail",)) == [c]


def test_job_list_pages_by_keyset_without_gaps_or_repeats(store: Store) -> None:
    ids = insert(store, *[new_job() for _ in range(23)])
    seen: list[int] = []
    before = None
    while page := store.job_list(limit=5, before_id=before):
        assert len(page) <= 5
        seen.extend(j.id for j in page)
        before = page[-1].id
    assert seen == sorted(ids, reverse=True)


def test_counts_by_queue_and_state_and_next_run_at(store: Store) -> None:
    insert(store, new_job(queue="a", run_at=at(50)), new_job(queue="a"), new_job(queue="b"))
    claim(store, queues=["b"])
    assert store.job_count_many() == [
        ("a", JobState.REQUESTED, 2),
        ("b", JobState.RUNNING, 1),
    ]
    assert store.job_next_run_at(["a"]) == T0
    assert store.job_next_run_at(["b"]) is None
    claim(store, queues=["a"])
    assert store.job_next_run_at([]) == at(50)


# -- prune ------------------------------------------------------------------------------------


def test_prune_deletes_only_finished_jobs_older_than_the_cutoff(store: Store) -> None:
    old = insert(store, *[new_job(retries=1, run_at=at(-1000)) for _ in range(5)], now=at(-1000))
    waiting_old = insert(store, new_job(run_at=at(10_000)), now=at(-1000))[0]
    first_claim = claim(store, now=at(-900))
    assert len(first_claim) == 5
    for i, job in enumerate(first_claim):
        # One attempt errors first (an extra attempt row), then every job finishes.
        if i == 0:
            store.job_finish_many([ending(job, Outcome.ERRORED, now=at(-890))])
            (job,) = claim(store, now=at(-890))
        store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(-800))])
    recent = insert(store, new_job(retries=1))[0]
    (job,) = claim(store, now=at(1))
    store.job_finish_many([ending(job, Outcome.ERRORED, now=at(1))])  # an attempt row too
    (job,) = claim(store, now=at(1))
    store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(2))])
    running = insert(store, new_job())[0]
    claim(store, now=at(3))
    assert attempt_count(store) == 2

    assert store.job_prune_many(finished_before=at(0), batch=2) == 5
    assert all(store.job_get(i) is None for i in old)
    assert {j.id for j in store.job_list()} == {waiting_old, recent, running}
    assert attempt_count(store) == 1  # the recent job's
    assert store.job_prune_many(finished_before=at(0)) == 0


# -- workers and rescue -----------------------------------------------------------------------


def beat(store: Store, worker: str, when: float) -> None:
    store.worker_beat(
        WorkerRecord(
            id=worker,
            host="host",
            pid=1,
            queues=["default"],
            started_at=T0,
            last_beat_at=at(when),
            stats={"done": 1},
        )
    )


def test_worker_beats_insert_then_update_one_row(store: Store) -> None:
    beat(store, "w1", 0)
    beat(store, "w1", 5)
    (worker,) = store.worker_list()
    assert (worker.id, worker.last_beat_at, worker.queues, worker.stats) == (
        "w1",
        at(5),
        ["default"],
        {"done": 1},
    )
    store.worker_delete("w1")
    assert store.worker_list() == []


def test_rescue_requeues_the_jobs_of_a_silent_worker_without_using_an_attempt(
    store: Store,
) -> None:
    can_retry, last_try, other = insert(store, new_job(retries=1), new_job(), new_job())
    beat(store, "dead", 0)
    beat(store, "alive", 0)
    lost = claim(store, limit=2, worker="dead", now=at(0))
    claim(store, worker="alive", now=at(0))

    def rescue(now: float) -> list[int]:
        ends = store.job_rescue_many(
            now=at(now), heartbeat_timeout=60, retry_delay=lambda name, attempt: 30
        )
        return [e.job_id for e in ends]

    assert rescue(59) == []  # within the heartbeat timeout nobody is lost
    beat(store, "alive", 100)
    assert rescue(120) == [can_retry, last_try]
    assert rescue(120) == []  # a second rescuer finds nothing

    # The worker's death is not the jobs' fault: back to wait at once, no attempt used, even
    # by the job that had no retry left.
    for job_id, max_attempts in ((can_retry, 2), (last_try, 1)):
        job = store.job_get(job_id)
        assert job is not None
        assert (job.state, job.run_at, job.lease) == (JobState.REQUESTED, at(120), None)
        assert (job.attempts, job.max_attempts) == (0, max_attempts)
        assert "stopped heartbeating" in (job.error or "")
        assert "requeued without using an attempt" in (job.error or "")
    assert state_of(store, other) is JobState.RUNNING
    (attempt,) = store.attempt_list(last_try)
    assert (attempt.outcome, attempt.worker_id, attempt.error_type) == (
        Outcome.LOST,
        "dead",
        "WorkerLost",
    )
    assert [w.id for w in store.worker_list()] == ["alive"]
    # The lost worker's late results are refused.
    late = [ending(j, Outcome.SUCCEEDED, now=at(130)) for j in lost]
    assert store.job_finish_many(late) == []


def test_rescue_fails_a_job_lost_with_its_worker_max_worker_losses_times_in_a_row(
    store: Store,
) -> None:
    (job_id,) = insert(store, new_job(retries=5))
    for loss in range(1, 4):
        start = 200.0 * loss
        (claimed,) = claim(store, worker=f"dead-{loss}", now=at(start))
        assert claimed.worker_losses == loss - 1
        ends = store.job_rescue_many(
            now=at(start + 61),
            heartbeat_timeout=60,
            retry_delay=lambda name, attempt: 0,
            max_worker_losses=lambda name: 3,
        )
        assert [e.job_id for e in ends] == [job_id]
    job = store.job_get(job_id)
    assert job is not None
    assert (job.state, job.attempts) == (JobState.FAILED, 0)
    assert "max_worker_losses = 3 reached, it looks like a crash loop" in (job.error or "")
    attempts = store.attempt_list(job_id)
    assert [a.outcome for a in attempts] == [Outcome.LOST] * 3
    assert all("worker loss" in (a.error_message or "") for a in attempts)


def test_a_rescued_ending_names_its_job_and_rule_for_the_hooks(store: Store) -> None:
    (job_id,) = insert(store, new_job("app.Report", queue="mail", priority=3, retries=5))
    claim(store, queues=["mail"], worker="dead", now=at(0))
    (end,) = store.job_rescue_many(
        now=at(61),
        heartbeat_timeout=60,
        retry_delay=lambda name, attempt: 0,
        max_worker_losses=lambda name: 1,  # the first loss is a crash loop
    )
    row = store.job_get(job_id)
    assert row is not None and row.state is JobState.FAILED
    lost, failed = hooks.endings(end)
    assert (lost.event, failed.event) == ("job_lost", "job_failed")
    assert (failed.outcome, failed.rule) == ("lost", "max_worker_losses")
    assert failed.error is not None and "crash loop" in failed.error
    assert (
        failed.job
        == lost.job
        == JobContext(
            job_id, "app.Report", "mail", 3, 1, 6, row.created_at, at(0), "dead", row.source
        )
    )


def test_rescue_finds_jobs_of_a_worker_that_never_beat(store: Store) -> None:
    (job_id,) = insert(store, new_job(retries=2))
    claim(store, worker="ghost", now=at(0))
    ends = store.job_rescue_many(now=at(61), heartbeat_timeout=60, retry_delay=lambda n, a: 0)
    assert [e.job_id for e in ends] == [job_id]
    assert state_of(store, job_id) is JobState.REQUESTED


def test_rescue_and_finish_racing_record_the_attempt_once(store: Store) -> None:
    (job_id,) = insert(store, new_job(retries=1))
    (job,) = claim(store, worker="slow", now=at(0))
    ends = store.job_rescue_many(now=at(120), heartbeat_timeout=60, retry_delay=lambda n, a: 0)
    finished = store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(121))])
    assert len(ends) + len(finished) == 1
    assert len(store.attempt_list(job_id)) == 1


# -- enqueue inside the caller's transaction --------------------------------------------------


@pytest.fixture
def caller_engine(database_url: str) -> sa.Engine:
    """The application's own engine, as plain as an application would make it."""
    engine = sa.create_engine(normalize_url(database_url))
    yield engine  # type: ignore[misc]
    engine.dispose()


@pytest.mark.parametrize("commit", [False, True], ids=["rollback", "commit"])
def test_enqueue_on_the_callers_connection_follows_its_transaction(
    store: Store, caller_engine: sa.Engine, commit: bool
) -> None:
    with caller_engine.connect() as conn:
        transaction = conn.begin()
        (inserted,) = store.job_insert_many([new_job(unique_key="tx")], now=T0, connection=conn)
        assert store.job_get(inserted.id) is None  # not visible before the commit
        if commit:
            transaction.commit()
        else:
            transaction.rollback()
    assert job_count(store) == (1 if commit else 0)
    # A rolled-back enqueue holds no unique key.
    (again,) = store.job_insert_many([new_job(unique_key="tx")], now=T0)
    assert again.inserted is not commit


@pytest.mark.parametrize("commit", [False, True], ids=["rollback", "commit"])
def test_enqueue_in_an_orm_session_follows_its_transaction(
    store: Store, caller_engine: sa.Engine, commit: bool
) -> None:
    with Session(caller_engine) as session:
        (inserted,) = store.job_insert_many([new_job()], now=T0, connection=session)
        if commit:
            session.commit()
        else:
            session.rollback()
    assert (store.job_get(inserted.id) is not None) is commit
    assert job_count(store) == (1 if commit else 0)


# -- the schema's own guarantees --------------------------------------------------------------

VALID_ROW = {
    "name": "tests.Job",
    "queue": "default",
    "priority": 0,
    "state": "requested",
    "params": EMPTY_PARAMS,
    "run_at": T0,
    "created_at": T0,
    "attempts": 0,
    "max_attempts": 1,
}
FINISHED = {"finished_at": T0}


@pytest.mark.parametrize(
    "override",
    [
        {"state": "paused"},
        {"state": "running"},  # without a lease
        {"lease": "L"},  # a lease on a waiting job
        {"finished_at": T0},  # a waiting job cannot have finished
        {"state": "succeeded"},  # finished without finished_at
        {"state": "failed", "lease": "L", **FINISHED},
        {"attempts": -1},
        {"max_attempts": 0},
        {"attempts": 1, "max_attempts": 1},  # waiting with no attempt left
        {"state": "failed", "attempts": 3, "max_attempts": 2, **FINISHED},
    ],
    ids=repr,
)
def test_check_constraints_refuse_an_inconsistent_job_row(
    store: Store, override: dict[str, object]
) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.insert(schema.jobs).values(VALID_ROW))  # the valid row goes in
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(schema.jobs).values({**VALID_ROW, **override}))
    assert job_count(store) == 1


def test_check_constraints_refuse_an_update_that_breaks_an_invariant(store: Store) -> None:
    (job_id,) = insert(store, new_job())
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            sa.update(schema.jobs).where(schema.jobs.c.id == job_id).values(state="running")
        )
    assert state_of(store, job_id) is JobState.REQUESTED


def test_an_attempt_row_needs_a_known_outcome_and_an_existing_job(store: Store) -> None:
    (job_id,) = insert(store, new_job())
    row = {"job_id": job_id, "attempt": 1, "lease": "L", "finished_at": T0}
    with store.engine.begin() as conn:
        conn.execute(sa.insert(schema.attempts).values({**row, "outcome": "lost"}))
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(schema.attempts).values({**row, "outcome": "vanished"}))
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.attempts).values({**row, "outcome": "lost", "job_id": job_id + 1})
        )


def test_the_database_itself_refuses_a_second_holder_of_a_key(store: Store) -> None:
    insert(store, new_job(unique_key="k"))
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(schema.jobs).values({**VALID_ROW, "unique_hold": "k"}))
    # A job with the same key that no longer holds it does not count.
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.jobs).values(
                {**VALID_ROW, "unique_key": "k", "state": "succeeded", **FINISHED}
            )
        )


def test_a_claim_returns_the_columns_of_claimed_job_in_its_field_order() -> None:
    # Store._claim builds ClaimedJob positionally from the claim's RETURNING row.
    from corequeue.store.claims import CLAIM_COLUMNS as _CLAIM_COLUMNS
    from corequeue.store.claims import CLAIMED_FIRST

    names = [f.name for f in dataclasses.fields(ClaimedJob)]
    given = names[CLAIMED_FIRST : CLAIMED_FIRST + 2]
    assert given == ["lease", "started_at"]
    # The rest are columns, but its gates (flow control), which the claim computes.
    assert [c.name for c in _CLAIM_COLUMNS] == [n for n in names if n not in {*given, "gates"}]
