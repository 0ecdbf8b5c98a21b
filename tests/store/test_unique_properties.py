"""Property tests of unique keys, on SQLite and PostgreSQL: every unique_until x on_conflict.

One enqueuer against a model: generated sequences of enqueues (one job or a batch), claims,
endings (success, an error retried once, an error that fails), cancels, a person's retries and
the clock moving on. Before each enqueue the model says, from the rows, which job is in its
key's scope (:func:`corequeue.core.uniqueness.holds`) and so what the enqueue must do: insert,
return that job (``deduplicated``), give it the new arguments and run time (replace), or raise
DuplicateJob and change nothing. After every step: never two jobs in the scope of one key.

Concurrent enqueuers (threads, and spawned processes beside a thread) with a worker claiming
and ending jobs meanwhile: a checker reads the rows over and over and never finds two jobs in
one key's scope; afterwards every job was reported inserted by exactly one enqueue, every
deduplicated handle and DuplicateJob names a job of its key, "keep" never changed a job's
arguments, and a debounced ("replace") job still waiting holds the arguments of its last
enqueue by one of the enqueuers.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from corequeue.core import uniqueness
from corequeue.core.errors import DuplicateJob, InvalidTransition, UniqueViolation
from corequeue.core.states import JobState, Outcome
from corequeue.core.uniqueness import OnConflict, Resolution
from corequeue.store import schema
from corequeue.store.queries import Store
from corequeue.store.records import ClaimedJob, NewJob
from testing.store_support import T0, ending

NAME = "tests.Job"
UNTILS = ("started", "finished", "30s")
COMBOS = list(itertools.product(UNTILS, OnConflict))

PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow "explain"
)


@dataclass(frozen=True)
class Call:
    """One job to enqueue."""

    key: str
    until: str
    on_conflict: OnConflict
    arg: int
    delay: float = 0.0

    def new_job(self, now: datetime) -> NewJob:
        return NewJob(
            name=NAME,
            params=json.dumps({"args": [self.arg], "kwargs": {}}),
            queue="default",
            priority=0,
            run_at=now + timedelta(seconds=self.delay),
            max_attempts=2,
            timeout=None,
            unique_key=self.key,
            source="tests/store/test_unique_properties.py",
            unique_until=self.until,
            on_conflict=self.on_conflict,
        )


@dataclass
class Row:
    id: int
    key: str
    state: JobState
    started_at: datetime | None
    finished_at: datetime | None
    until: str
    hold: str
    params: str
    run_at: datetime

    def in_scope(self, now: datetime) -> bool:
        return uniqueness.holds(self.until, self.state, self.started_at, self.finished_at, now=now)


def rows(store: Store) -> dict[int, Row]:
    """Every job, read in one statement (one snapshot)."""
    j = schema.jobs
    query = sa.select(
        j.c.id,
        j.c.unique_key,
        j.c.state,
        j.c.started_at,
        j.c.finished_at,
        j.c.unique_until,
        j.c.unique_hold,
        j.c.params,
        j.c.run_at,
    ).order_by(j.c.id)
    with store.engine.connect() as conn:
        return {r.id: Row(*r[:2], JobState(r.state), *r[3:]) for r in conn.execute(query)}


def assert_one_in_scope(found: dict[int, Row], now: datetime) -> None:
    """Never two jobs in the scope of one key, and a job in scope holds its key."""
    by_key: dict[str, list[int]] = {}
    for row in found.values():
        if row.key and row.in_scope(now):
            by_key.setdefault(row.key, []).append(row.id)
            assert row.hold == row.key, f"job {row.id} is in its key's scope without the hold"
    assert all(len(ids) == 1 for ids in by_key.values()), by_key


def reset(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.delete(schema.attempts))
        conn.execute(sa.delete(schema.jobs))


@pytest.fixture
def unique_store(database_url: str) -> Iterator[Store]:
    store = Store.from_url(database_url)
    try:
        yield store
    finally:
        store.dispose()


# -- one enqueuer, against the model ----------------------------------------------------------

calls = st.builds(
    Call,
    key=st.sampled_from(["k1", "k2"]),
    until=st.sampled_from(UNTILS),
    on_conflict=st.sampled_from(list(OnConflict)),
    arg=st.integers(0, 1000),
    delay=st.sampled_from([0.0, 5.0]),
)
steps = st.one_of(
    st.tuples(st.just("enqueue"), st.lists(calls, min_size=1, max_size=3)),
    st.tuples(st.just("claim"), st.none()),
    st.tuples(st.just("end"), st.sampled_from([Outcome.SUCCEEDED, Outcome.ERRORED])),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("retry"), st.integers(0, 20)),
    st.tuples(st.just("wait"), st.sampled_from([1, 20, 40])),
)


@dataclass
class Expected:
    """What a batch must do: per call, the job it returns (an id, or ``-(m + 1)`` for the job
    call m of the batch adds), and the call whose arguments each job it touched then has."""

    returns: list[int]
    arguments: dict[int, Call]


def expect_enqueue(before: dict[int, Row], batch: Sequence[Call], now: datetime) -> Expected | int:
    """What ``batch`` must do, from the rows before it; an int: the id DuplicateJob names
    (negative: a job the batch itself added)."""
    # (key, in scope, state) of every job, those this batch adds under negative ids.
    model = {i: (r.key, r.in_scope(now), r.state) for i, r in before.items()}
    expected = Expected([], {})
    for m, call in enumerate(batch):
        holders = [i for i, (key, scope, _) in model.items() if key == call.key and scope]
        if not holders:
            model[-(m + 1)] = (call.key, True, JobState.REQUESTED)
            expected.returns.append(-(m + 1))
            expected.arguments[-(m + 1)] = call
            continue
        (holder,) = holders
        resolution = uniqueness.resolve(call.on_conflict, model[holder][2])
        if resolution is Resolution.RAISE:
            return holder
        if resolution is Resolution.REPLACE:
            expected.arguments[holder] = call
        expected.returns.append(holder)
    return expected


def check_enqueue(store: Store, batch: Sequence[Call], now: datetime) -> None:
    before = rows(store)
    expected = expect_enqueue(before, batch, now)
    try:
        got = store.job_insert_many([c.new_job(now) for c in batch], now=now)
    except DuplicateJob as exc:
        assert isinstance(expected, int), f"DuplicateJob, expected {expected}"
        assert exc.job_id == (expected if expected >= 0 else None)
        after = rows(store)
        assert {i: (r.params, r.run_at) for i, r in after.items()} == {
            i: (r.params, r.run_at) for i, r in before.items()
        }  # nothing inserted, nothing replaced (a stale hold may have been cleared)
        return
    assert not isinstance(expected, int), f"expected DuplicateJob naming job {expected}"

    def real(job_id: int) -> int:
        return got[-job_id - 1].id if job_id < 0 else job_id

    assert [(g.id, not g.inserted) for g in got] == [
        (real(i), not (i < 0 and i == -(m + 1))) for m, i in enumerate(expected.returns)
    ]
    after = rows(store)
    added = {g.id for g in got if g.inserted}
    assert set(after) == set(before) | added and not added & set(before)
    for job_id, call in expected.arguments.items():
        job = call.new_job(now)
        assert (after[real(job_id)].params, after[real(job_id)].run_at) == (job.params, job.run_at)
    touched = {real(i) for i in expected.arguments}
    for job_id in set(before) - touched:
        assert (after[job_id].params, after[job_id].run_at) == (
            before[job_id].params,
            before[job_id].run_at,
        )


def check_retry(store: Store, job_id: int, now: datetime) -> None:
    before = rows(store)
    job = before[job_id]
    others = [r for r in before.values() if r.key == job.key and r.id != job_id]
    retakes = uniqueness.retakes_on_retry(job.until, job.started_at)
    taken = retakes and any(r.in_scope(now) for r in others)
    try:
        store.job_retry(job_id, now=now)
    except UniqueViolation:
        assert taken and job.state.is_final
        return
    except InvalidTransition:
        assert job.state in (JobState.REQUESTED, JobState.RUNNING, JobState.SUCCEEDED)
        return
    assert not taken
    assert rows(store)[job_id].state is JobState.REQUESTED


@PROPERTY_SETTINGS
@given(plan=st.lists(steps, max_size=25))
def test_one_enqueuer_does_what_the_policies_say(unique_store: Store, plan: list[Any]) -> None:
    store = unique_store
    reset(store)
    now = T0
    running: list[ClaimedJob] = []
    for action, value in plan:
        if action == "enqueue":
            check_enqueue(store, value, now)
        elif action == "claim":
            running += store.job_claim_many(
                queues=(), limit=1, lease=uuid.uuid4().hex, worker_id="w", now=now
            )
        elif action == "end" and running:
            job = running.pop(0)
            store.job_finish_many([ending(job, value, now=now)])
        elif action in ("cancel", "retry") and (ids := sorted(rows(store))):
            job_id = ids[value % len(ids)]
            if action == "retry":
                check_retry(store, job_id, now)
            else:
                with contextlib.suppress(InvalidTransition):
                    store.job_cancel(job_id, now=now)
        elif action == "wait":
            now += timedelta(seconds=value)
        assert_one_in_scope(rows(store), now)


# -- concurrent enqueuers -----------------------------------------------------------------------


def combo_key(until: str, on_conflict: OnConflict) -> str:
    return f"{until}/{on_conflict.value}"


POLICY = {combo_key(u, c): (u, c) for u, c in COMBOS}

#: An enqueuer's plan: batches of (key, arg); args are unique across the whole test.
Plan = list[list[tuple[str, int]]]


def enqueue_plan(url_or_store: str | Store, plan: Plan) -> list[list[tuple[str, Any, Any]]]:
    """Run ``plan`` (in a thread or a spawned process): per batch, per job (key, arg, result);
    result is (id, deduplicated), or ("raised", job id) for every job of a refused batch."""
    store = Store.from_url(url_or_store) if isinstance(url_or_store, str) else url_or_store
    out: list[list[tuple[str, Any, Any]]] = []
    try:
        for batch in plan:
            jobs = [Call(key, *POLICY[key], arg=arg).new_job(T0) for key, arg in batch]
            try:
                got = store.job_insert_many(jobs, now=T0)
            except DuplicateJob as exc:
                out.append([(key, arg, ("raised", exc.job_id)) for key, arg in batch])
                continue
            out.append(
                [(k, a, (g.id, not g.inserted)) for (k, a), g in zip(batch, got, strict=True)]
            )
        return out
    finally:
        if isinstance(url_or_store, str):
            store.dispose()


def work(store: Store, stop: threading.Event, outcomes: Sequence[Outcome]) -> None:
    """A worker: claims one job at a time and ends it with the next outcome."""
    for outcome in itertools.cycle(outcomes):
        if stop.is_set():
            return
        claimed = store.job_claim_many(
            queues=(), limit=1, lease=uuid.uuid4().hex, worker_id="w", now=T0
        )
        store.job_finish_many([ending(job, outcome, now=T0) for job in claimed])


def check_concurrent(store: Store, results: Sequence[list[list[tuple[str, Any, Any]]]]) -> None:
    found = rows(store)
    inserted: dict[int, int] = {}  # id -> arg of the enqueue that added it
    returned: dict[int, list[list[int]]] = {}  # id -> per enqueuer, the args that returned it
    for n, enqueuer in enumerate(results):
        for batch in enqueuer:
            for key, arg, (first, second) in batch:
                if first == "raised":
                    assert POLICY[key][1] is OnConflict.RAISE or any(
                        POLICY[k][1] is OnConflict.RAISE for k, _, _ in batch
                    )
                    assert second is None or second in found
                    continue
                job_id, deduplicated = first, second
                assert found[job_id].key == key
                if not deduplicated:
                    assert job_id not in inserted, f"job {job_id} reported inserted twice"
                    inserted[job_id] = arg
                else:
                    assert POLICY[key][1] is not OnConflict.RAISE
                lists = returned.setdefault(job_id, [[] for _ in results])
                lists[n].append(arg)
    assert set(inserted) == set(found), "a job no enqueue reported, or one that is not there"
    for job_id, row in found.items():
        arg = json.loads(row.params)["args"][0]
        on_conflict = POLICY[row.key][1]
        if on_conflict is not OnConflict.REPLACE:
            assert arg == inserted[job_id]  # never changed
        elif row.state is JobState.REQUESTED and row.started_at is None:
            # Debounce: a job that has waited all along has the arguments of the last enqueue,
            # by one of the enqueuers, that returned it.
            lasts = {args[-1] for args in returned[job_id] if args}
            assert arg in lasts, f"job {job_id} has {arg}, the last enqueues gave {lasts}"
        elif row.state is JobState.REQUESTED:
            # Waiting again after an attempt (the worker's errored outcomes are retried): an
            # enqueue while it ran kept it as it was ("replace" changes a waiting job only), so
            # a later one need not be the one whose arguments it has; one of them is.
            given = {a for args in returned[job_id] for a in args}
            assert arg in given, f"job {job_id} has {arg}, its enqueues gave {given}"


def concurrent_plans(enqueuers: int) -> st.SearchStrategy[list[Plan]]:
    keys = st.sampled_from(sorted(POLICY))
    batch = st.lists(keys, min_size=1, max_size=3)
    plan = st.lists(batch, min_size=3, max_size=12)
    return st.lists(plan, min_size=enqueuers, max_size=enqueuers).map(_number_args)


def _number_args(plans: list[list[list[str]]]) -> list[Plan]:
    counter = itertools.count(1)
    return [[[(key, next(counter)) for key in batch] for batch in plan] for plan in plans]


def run_concurrently(
    store: Store, plans: list[Plan], enqueuers: Sequence[Any], outcomes: Sequence[Outcome]
) -> None:
    """Start the enqueuers (callables returning results), a worker and a checker that asserts
    the invariant on every snapshot until they are done; then check the results."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(target: Any) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    worker = threading.Thread(target=guarded, args=(lambda: work(store, stop, outcomes),))
    worker.start()
    results: list[Any] = []
    try:
        pending = [e() for e in enqueuers]  # futures, or threads' result holders
        while not all(p.done() for p in pending) and not errors:
            assert_one_in_scope(rows(store), T0)
        results = [p.result(timeout=60) for p in pending]
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not errors, errors
    assert_one_in_scope(rows(store), T0)
    check_concurrent(store, results)


@dataclass
class _ThreadResult:
    thread: threading.Thread
    value: Any = None
    error: BaseException | None = None

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self, timeout: float) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "an enqueuer thread did not finish"
        if self.error is not None:
            raise self.error
        return self.value


def in_thread(store: Store, plan: Plan, barrier: threading.Barrier) -> Any:
    def start() -> _ThreadResult:
        holder = _ThreadResult(threading.Thread(target=lambda: None))

        def run() -> None:
            try:
                barrier.wait(timeout=30)
                holder.value = enqueue_plan(store, plan)
            except BaseException as exc:
                holder.error = exc

        holder.thread = threading.Thread(target=run)
        holder.thread.start()
        return holder

    return start


OUTCOMES = st.lists(st.sampled_from([Outcome.SUCCEEDED, Outcome.ERRORED]), min_size=1, max_size=3)


@settings(PROPERTY_SETTINGS, max_examples=8)
@given(plans=concurrent_plans(3), outcomes=OUTCOMES)
def test_concurrent_threads_never_put_two_jobs_in_one_key_s_scope(
    unique_store: Store, plans: list[Plan], outcomes: list[Outcome]
) -> None:
    reset(unique_store)
    barrier = threading.Barrier(len(plans))
    run_concurrently(
        unique_store, plans, [in_thread(unique_store, p, barrier) for p in plans], outcomes
    )


@settings(PROPERTY_SETTINGS, max_examples=4)
@given(plans=concurrent_plans(3), outcomes=OUTCOMES)
def test_processes_and_a_thread_never_put_two_jobs_in_one_key_s_scope(
    unique_store: Store,
    database_url: str,
    process_pool: ProcessPoolExecutor,
    plans: list[Plan],
    outcomes: list[Outcome],
) -> None:
    reset(unique_store)
    enqueuers = [
        (lambda p=p: process_pool.submit(enqueue_plan, database_url, p)) for p in plans[:2]
    ]
    enqueuers.append(in_thread(unique_store, plans[2], threading.Barrier(1)))
    run_concurrently(unique_store, plans, enqueuers, outcomes)
