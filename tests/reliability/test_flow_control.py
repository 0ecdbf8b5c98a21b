"""Flow control with real worker processes (issue 23).

- Property (hypothesis, several workers, SQLite and PostgreSQL): with random jobs, keys and
  limits, the attempts' recorded start and end times never show more running jobs of a key
  than its concurrency limit, never more than N starts of a rate-limited key in any window of
  its period, and every job finishes.
- Pause under load (PostgreSQL): a paused queue's starts stop within 1 s while another queue
  keeps draining; resuming drains it.

Bounded: few examples, few jobs each, every wait has a deadline.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corequeue
from corequeue import registry, runtime
from corequeue.core import limits
from corequeue.store import schema
from corequeue.store.queries import Store
from testing.faults import wait_for
from testing.jobs import Sleep
from tests.conftest import empty_postgres
from tests.reliability.conftest import Spawner, attempts_by_job

WORKERS = 2
PROCESSES = ("--max-processes", "3")


def _finished(store: Store, ids: list[int]) -> bool:
    with store.engine.connect() as conn:
        open_jobs = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.jobs)
            .where(schema.jobs.c.id.in_(ids), schema.jobs.c.finished_at.is_(None))
        ).scalar_one()
    return open_jobs == 0


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end at t before a start at t)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def _most_in_window(starts: list[datetime], period: float) -> int:
    """The most starts in any half-open window [t, t + period)."""
    starts = sorted(starts)
    most, first = 0, 0
    for last, t in enumerate(starts):
        while t - starts[first] >= timedelta(seconds=period):
            first += 1
        most = max(most, last - first + 1)
    return most


def check_limits(store: Store, plan: dict[int, tuple[str, int | None, float | None]]) -> None:
    """``plan``: job id -> (key, concurrency limit, rate period); rates are (limit, period)."""
    by_job = attempts_by_job(store)
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    limit_of: dict[str, tuple[int | None, float | None]] = {}
    for job_id, (key, concurrency, period) in plan.items():
        limit_of[key] = (concurrency, period)
        for attempt in by_job.get(job_id, []):
            assert attempt.started_at is not None
            spans[key].append((attempt.started_at, attempt.finished_at))
    for key, (limit, period) in limit_of.items():
        if period is None:
            assert limit is not None
            assert _max_overlap(spans[key]) <= limit, (key, limit, sorted(spans[key]))
        else:
            assert limit is not None
            # The starts the attempts recorded (their children's, on the one clock of this
            # machine), over windows of the whole period: a rate slot is free again a period
            # after the start its attempt recorded, not its claim (core.limits.slot_is_free).
            starts = [s for s, _ in spans[key]]
            assert _most_in_window(starts, period) <= limit, (key, limit, period, sorted(starts))


job_plans = st.lists(
    st.tuples(
        st.sampled_from(["concurrency", "rate"]),
        st.integers(1, 3),  # the limit
        st.integers(2, 8),  # jobs under the key
    ),
    min_size=1,
    max_size=4,
)


def run_property(url: str, spawn: Spawner) -> None:
    corequeue.configure(url, middleware=[])
    store = runtime.get_store()
    for _ in range(WORKERS):
        spawn(url, *PROCESSES, imports=("testing.jobs",))

    @settings(
        max_examples=4,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(job_plans, st.randoms(use_true_random=False))
    def prop(plans: list[tuple[str, int, int]], rng: object) -> None:
        plan: dict[int, tuple[str, int | None, float | None]] = {}
        run = uuid.uuid4().hex[:8]
        calls = []
        for n, (kind, limit, count) in enumerate(plans):
            key = f"{run}:{n}"
            for _ in range(count):
                calls.append((key, kind, limit))
        rng.shuffle(calls)  # type: ignore[attr-defined]
        for key, kind, limit in calls:
            if kind == "concurrency":
                handle = Sleep(0.05).run_in_worker(limit_key=key, concurrency_limit=limit)
                plan[handle.id] = (limits.job_key(registry.job_name(Sleep), key), limit, None)
            else:
                handle = Sleep(0.0).run_in_worker(limit_key=key, rate_limit=f"{limit}/0.5s")
                plan[handle.id] = (limits.job_key(registry.job_name(Sleep), key), limit, 0.5)
        ids = list(plan)
        wait_for(
            lambda: _finished(store, ids), timeout=60, what="every job to finish", detail=spawn.logs
        )
        check_limits(store, plan)

    prop()


def test_limits_hold_across_workers_on_postgresql(postgres_url: str, spawn: Spawner) -> None:
    try:
        run_property(empty_postgres(postgres_url), spawn)
    finally:
        runtime.reset()


def test_limits_hold_across_workers_on_sqlite(tmp_path: Path, spawn: Spawner) -> None:
    url = f"sqlite:///{tmp_path / 'corequeue.sqlite3'}"
    Store.from_url(url).migrate()
    try:
        run_property(url, spawn)
    finally:
        runtime.reset()


def test_pausing_a_queue_under_load_stops_its_starts_within_a_second(
    pg_store: Store, pg_url: str, spawn: Spawner
) -> None:
    ids = {
        queue: [
            h.id for h in corequeue.enqueue_many([Sleep(0.02) for _ in range(300)], queue=queue)
        ]
        for queue in ("paused", "busy")
    }
    spawn(pg_url, "--max-processes", "2", imports=("testing.jobs",))
    wait_for(
        lambda: (
            sum(q.running for q in pg_store.queue_list(now=_now())) > 0
            and _started(pg_store, ids["paused"]) >= 5
        ),
        timeout=60,
        what="the worker to run jobs of both queues",
        detail=spawn.logs,
    )
    corequeue.pause_queue("paused")
    paused_at = _now()
    busy_before = _finished_count(pg_store, ids["busy"])
    wait_for(
        lambda: _finished_count(pg_store, ids["busy"]) >= busy_before + 20,
        timeout=60,
        what="the other queue to keep draining",
        detail=spawn.logs,
    )
    late = [s for s in _starts(pg_store, ids["paused"]) if s > paused_at + timedelta(seconds=1)]
    assert late == [], f"{len(late)} starts of the paused queue more than 1 s after the pause"
    (info,) = [q for q in pg_store.queue_list(now=_now()) if q.name == "paused"]
    assert info.paused and info.ready > 0
    corequeue.resume_queue("paused")
    wait_for(
        lambda: _finished(pg_store, ids["paused"] + ids["busy"]),
        timeout=120,
        what="both queues to drain after the resume",
        detail=spawn.logs,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _starts(store: Store, ids: list[int]) -> list[datetime]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.jobs.c.started_at).where(
                schema.jobs.c.id.in_(ids), schema.jobs.c.started_at.is_not(None)
            )
        ).scalars()
        return [r for r in rows]


def _started(store: Store, ids: list[int]) -> int:
    return len(_starts(store, ids))


def _finished_count(store: Store, ids: list[int]) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.jobs)
                .where(schema.jobs.c.id.in_(ids), schema.jobs.c.finished_at.is_not(None))
            ).scalar_one()
        )


def test_a_worker_applies_the_configured_queue_limits(
    pg_store: Store, pg_url: str, spawn: Spawner, tmp_path: Path
) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.corequeue.queue.limited]\nconcurrency_limit = 1\n")
    handles = corequeue.enqueue_many([Sleep(0.05) for _ in range(6)], queue="limited")
    others = corequeue.enqueue_many([Sleep(0.05) for _ in range(6)], queue="free")
    spawn(pg_url, "--max-processes", "3", "--config", str(config), imports=("testing.jobs",))
    ids = [h.id for h in handles]
    wait_for(
        lambda: _finished(pg_store, ids + [h.id for h in others]),
        timeout=60,
        what="both queues to drain",
        detail=spawn.logs,
    )
    spans = [
        (a.started_at, a.finished_at)
        for attempts in attempts_by_job(pg_store).values()
        for a in attempts
        if a.job_id in ids and a.started_at is not None
    ]
    assert len(spans) == 6 and _max_overlap(spans) == 1
    (info,) = [q for q in pg_store.queue_list(now=_now()) if q.name == "limited"]
    assert info.concurrency_limit == 1
