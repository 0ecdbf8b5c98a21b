"""Property tests on claiming, on SQLite and PostgreSQL, with concurrent claimers.

Generated sets of jobs (priorities, queues, run_at before or after now, unique keys) are
claimed by one claimer, by several threads, and by threads and processes together. What the
claim query guarantees, and these tests check:

- Unique keys: one active job per (name, key); a duplicate enqueue names the first job.
- Nothing is claimed twice: every claimed job is in exactly one batch, and the database holds
  it running under that batch's lease.
- Nothing ready is left: claimers stop only when a claim comes back empty, and then every ready
  job in their queues is claimed. (Under SKIP LOCKED a claim may come back short because
  another claimer holds rows locked; those rows are exactly the ones that claimer takes.)
- Order: a single claimer always gets the first ``limit`` ready jobs (priority, then run_at,
  then insertion order). With concurrent claimers, each batch is still a prefix of what was
  free while it ran: every ready job ranked ahead of a batch's last job was taken by a batch
  that had started before this one ended, never by a later one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corequeue.core.states import JobState
from corequeue.store import schema
from corequeue.store.queries import Store
from corequeue.store.records import NewJob

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
QUEUES = ("a", "b", "c")
PARAMS = '{"args":[],"kwargs":{}}'

PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Spec:
    name: str
    queue: str
    priority: int
    offset: int  # seconds from NOW: <= 0 is ready
    unique_key: str


specs = st.builds(
    Spec,
    name=st.sampled_from(["J1", "J2"]),
    queue=st.sampled_from(QUEUES),
    priority=st.integers(-2, 2),
    offset=st.sampled_from([-3600, -60, -1, 0, 1, 60]),
    unique_key=st.one_of(st.just(""), st.sampled_from(["k1", "k2", "k3"])),
)
job_sets = st.lists(specs, max_size=40)
queue_sets = st.one_of(
    st.just(()), st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True)
)


@dataclass(frozen=True)
class Row:
    id: int
    queue: str
    priority: int
    run_at: datetime

    @property
    def rank(self) -> tuple[int, datetime, int]:
        return (-self.priority, self.run_at, self.id)

    @property
    def ready(self) -> bool:
        return self.run_at <= NOW


@dataclass(frozen=True)
class Batch:
    claimer: int
    queues: tuple[str, ...]
    lease: str
    ids: tuple[int, ...]
    started: float  # time.monotonic(): one clock for every process on the machine
    ended: float


def _reset(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.delete(schema.attempts))
        conn.execute(sa.delete(schema.jobs))


def _insert(store: Store, jobs: Sequence[Spec]) -> dict[int, Row]:
    new = [
        NewJob(
            name=s.name,
            params=PARAMS,
            queue=s.queue,
            priority=s.priority,
            run_at=NOW + timedelta(seconds=s.offset),
            max_attempts=1,
            timeout=None,
            unique_key=s.unique_key,
            source="tests/store/test_claim_properties.py",
        )
        for s in jobs
    ]
    inserted = store.job_insert_many(new, now=NOW - timedelta(hours=2))
    # Unique keys: one active job per (name, key); later duplicates name the first one.
    first: dict[tuple[str, str], int] = {}
    rows: dict[int, Row] = {}
    for spec, job, ins in zip(jobs, new, inserted, strict=True):
        if spec.unique_key:
            holder = first.setdefault((spec.name, spec.unique_key), ins.id)
            assert ins.id == holder
            assert ins.inserted == (ins.id not in rows)
        else:
            assert ins.inserted
        if ins.inserted:
            rows[ins.id] = Row(ins.id, job.queue, job.priority, job.run_at)
    return rows


def _covers(queues: Sequence[str], queue: str) -> bool:
    return not queues or queue in queues


def claim_until_empty(
    url_or_store: str | Store, claimer: int, queues: tuple[str, ...], limit: int
) -> list[Batch]:
    """Claim batches of ``limit`` until a claim comes back empty (runs in threads and in
    spawned processes)."""
    store = Store.from_url(url_or_store) if isinstance(url_or_store, str) else url_or_store
    batches: list[Batch] = []
    try:
        while True:
            lease = uuid.uuid4().hex
            started = time.monotonic()
            claimed = store.job_claim_many(
                queues=queues, limit=limit, lease=lease, worker_id=f"claimer-{claimer}", now=NOW
            )
            ended = time.monotonic()
            if not claimed:
                return batches
            assert all(j.lease == lease for j in claimed)
            batches.append(
                Batch(claimer, queues, lease, tuple(j.id for j in claimed), started, ended)
            )
    finally:
        if isinstance(url_or_store, str):
            store.dispose()


def _check(
    store: Store,
    rows: dict[int, Row],
    batches: Sequence[Batch],
    claimer_queues: Sequence[tuple[str, ...]],
) -> None:
    claimed_by: dict[int, Batch] = {}
    for batch in batches:
        for job_id in batch.ids:
            # Nothing is claimed twice.
            assert job_id not in claimed_by, f"job {job_id} claimed by two batches"
            claimed_by[job_id] = batch
            row = rows[job_id]
            assert row.ready, f"job {job_id} claimed before its run_at"
            assert _covers(batch.queues, row.queue), f"job {job_id} is not in {batch.queues}"
    # Nothing ready is left in the claimers' queues; nothing else was taken.
    expected = {
        r.id for r in rows.values() if r.ready and any(_covers(q, r.queue) for q in claimer_queues)
    }
    assert set(claimed_by) == expected
    # The database agrees: claimed jobs run under their batch's lease, the rest wait untouched.
    for job_id in rows:
        record = store.job_get(job_id)
        assert record is not None
        if job_id in claimed_by:
            batch = claimed_by[job_id]
            assert (record.state, record.lease, record.attempts) == (
                JobState.RUNNING,
                batch.lease,
                1,
            )
            assert record.worker_id == f"claimer-{batch.claimer}"
        else:
            assert (record.state, record.lease, record.attempts) == (JobState.REQUESTED, None, 0)
    # Order: whatever was ranked ahead of a batch's last job was taken by a batch that started
    # before this one ended (it was claimed or locked by then), never by a later batch.
    for batch in batches:
        last = max(rows[i].rank for i in batch.ids)
        for row in rows.values():
            if row.ready and _covers(batch.queues, row.queue) and row.rank < last:
                other = claimed_by[row.id]
                assert other.started < batch.ended, (
                    f"job {row.id} was free while batch {batch.ids} took a lower-ranked job"
                )


@pytest.fixture
def claim_store(database_url: str) -> Iterator[Store]:
    store = Store.from_url(database_url)
    try:
        yield store
    finally:
        store.dispose()


@PROPERTY_SETTINGS
@given(jobs=job_sets, plan=st.lists(st.tuples(st.integers(1, 6), queue_sets), max_size=12))
def test_a_single_claimer_gets_the_first_ready_jobs_in_order(
    claim_store: Store, jobs: list[Spec], plan: list[tuple[int, tuple[str, ...]]]
) -> None:
    _reset(claim_store)
    rows = _insert(claim_store, jobs)
    free = {r.id for r in rows.values() if r.ready}
    for limit, queues in plan:
        queues = tuple(queues)
        claimed = claim_store.job_claim_many(
            queues=queues, limit=limit, lease=uuid.uuid4().hex, worker_id="one", now=NOW
        )
        ready = sorted(
            (rows[i] for i in free if _covers(queues, rows[i].queue)), key=lambda r: r.rank
        )
        assert [j.id for j in claimed] == [r.id for r in ready[:limit]]
        free -= {j.id for j in claimed}
    # Nothing scheduled later was touched.
    later = claim_store.job_claim_many(queues=(), limit=100, lease="last", worker_id="one", now=NOW)
    assert {j.id for j in later} == free


@PROPERTY_SETTINGS
@given(
    jobs=job_sets,
    claimers=st.lists(st.tuples(st.integers(1, 5), queue_sets), min_size=2, max_size=4),
)
def test_concurrent_threads_claim_each_ready_job_once(
    claim_store: Store, jobs: list[Spec], claimers: list[tuple[int, tuple[str, ...]]]
) -> None:
    _reset(claim_store)
    rows = _insert(claim_store, jobs)
    barrier = threading.Barrier(len(claimers))
    results: list[list[Batch]] = [[] for _ in claimers]
    errors: list[BaseException] = []

    def run(n: int, limit: int, queues: tuple[str, ...]) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = claim_until_empty(claim_store, n, queues, limit)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(n, limit, tuple(queues)))
        for n, (limit, queues) in enumerate(claimers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a claimer thread did not finish in 60s"
    assert not errors, errors
    batches = [b for r in results for b in r]
    _check(claim_store, rows, batches, [tuple(q) for _, q in claimers])


@settings(PROPERTY_SETTINGS, max_examples=10)
@given(
    jobs=st.lists(specs, min_size=5, max_size=40),
    limits=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
)
def test_threads_and_processes_claim_each_ready_job_once(
    claim_store: Store,
    database_url: str,
    process_pool: ProcessPoolExecutor,
    jobs: list[Spec],
    limits: tuple[int, int, int],
) -> None:
    _reset(claim_store)
    rows = _insert(claim_store, jobs)
    queues: tuple[str, ...] = ()
    futures = [
        process_pool.submit(claim_until_empty, database_url, n, queues, limits[n]) for n in (0, 1)
    ]
    in_thread = claim_until_empty(claim_store, 2, queues, limits[2])
    batches = [b for f in futures for b in f.result(timeout=60)] + in_thread
    _check(claim_store, rows, batches, [queues])
