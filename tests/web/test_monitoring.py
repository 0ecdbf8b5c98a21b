"""The monitoring queries behind the overview and /metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corequeue.core.states import JobState, Outcome
from corequeue.store.monitoring import Distribution, Monitor
from corequeue.store.queries import Store
from corequeue.store.records import JobFilter
from corequeue.web.chart import nice_ceiling, throughput_chart
from tests.web.conftest import new_job, run_job, seed_history

NOW = datetime(2024, 5, 1, 12, 30, 20, tzinfo=UTC)


def test_throughput_counts_every_job_in_its_minute(store: Store) -> None:
    # Several jobs finishing at different seconds of the same minutes.
    for minute, seconds in ((3, [1, 17, 45, 59]), (1, [0, 30])):
        for s in seconds:
            at = NOW.replace(second=0) - timedelta(minutes=minute) + timedelta(seconds=s)
            run_job(store, new_job(run_at=at - timedelta(seconds=0.75)), [Outcome.SUCCEEDED])
    run_job(
        store, new_job(queue="x", run_at=NOW - timedelta(minutes=1, seconds=5)), [Outcome.ERRORED]
    )
    buckets = Monitor(store).throughput(now=NOW, minutes=10)
    assert len(buckets) == 10
    assert buckets[-1].start == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    by_minute = {b.start.strftime("%H:%M"): (b.succeeded, b.failed) for b in buckets if b.finished}
    assert by_minute == {"12:27": (4, 0), "12:29": (2, 1)}


def test_throughput_ignores_jobs_finished_before_the_window(store: Store) -> None:
    run_job(store, new_job(run_at=NOW - timedelta(hours=2)), [Outcome.SUCCEEDED])
    assert sum(b.finished for b in Monitor(store).throughput(now=NOW, minutes=60)) == 0


def test_seeded_hour_adds_up(store: Store) -> None:
    now = datetime.now(UTC)
    made = seed_history(store, now, minutes=20)
    buckets = Monitor(store).throughput(now=now, minutes=60)
    assert sum(b.finished for b in buckets) == made


def test_queue_stats_split_waiting_jobs_into_ready_and_scheduled(store: Store) -> None:
    store.job_insert_many(
        [
            new_job(queue="a", run_at=NOW - timedelta(minutes=5)),
            new_job(queue="a", run_at=NOW - timedelta(minutes=1)),
            new_job(queue="a", run_at=NOW + timedelta(minutes=5)),
            new_job(queue="b", run_at=NOW + timedelta(hours=1)),
        ],
        now=NOW - timedelta(minutes=10),
    )
    monitor = Monitor(store)
    stats = {q.queue: q for q in monitor.queue_stats(now=NOW)}
    assert (stats["a"].ready, stats["a"].scheduled) == (2, 1)
    assert stats["a"].oldest_ready_at == NOW - timedelta(minutes=5)
    assert stats["a"].oldest_wait(NOW) == 300
    assert (stats["b"].ready, stats["b"].scheduled, stats["b"].oldest_wait(NOW)) == (0, 1, None)
    assert monitor.state_totals(list(stats.values()))[JobState.REQUESTED] == 4
    delayed, total = monitor.delayed_jobs(now=NOW, limit=1)
    assert total == 2 and [j.queue for j in delayed] == ["a"]


def test_timings_and_attempt_counts(store: Store) -> None:
    run_job(
        store,
        new_job(run_at=NOW - timedelta(minutes=3)),
        [Outcome.SUCCEEDED],
        latency=1,
        duration=4,
    )
    run_job(
        store,
        new_job(run_at=NOW - timedelta(minutes=2), retries=1),
        [Outcome.TIMED_OUT, Outcome.SUCCEEDED],
        latency=3,
        duration=2,
    )
    monitor = Monitor(store)
    timings = monitor.timings(now=NOW)
    assert (timings.latency.p50, timings.latency.max) == (1, 3)
    assert timings.duration.count == 2 and timings.duration.max == 4
    counts = monitor.attempt_counts()
    assert (
        counts[Outcome.SUCCEEDED] == 2
        and counts[Outcome.TIMED_OUT] == 1
        and counts[Outcome.LOST] == 0
    )


def test_job_count_ids_and_previous_page(store: Store) -> None:
    inserted = store.job_insert_many([new_job(queue="q", run_at=NOW) for _ in range(7)], now=NOW)
    ids = [i.id for i in inserted]
    monitor = Monitor(store)
    assert monitor.job_count(JobFilter(queues=("q",))) == 7
    assert list(monitor.job_ids(JobFilter(), batch=3)) == [
        ids[::-1][0:3],
        ids[::-1][3:6],
        ids[::-1][6:],
    ]
    page = monitor.job_list_after(JobFilter(), after_id=ids[2], limit=2)
    assert [j.id for j in page] == [ids[4], ids[3]]


def test_distribution_percentiles_are_nearest_rank() -> None:
    d = Distribution.of([float(v) for v in range(1, 101)])
    assert (d.p50, d.p90, d.p99, d.max, d.count) == (50, 90, 99, 100, 100)
    assert Distribution.of([]).p50 is None


def test_chart_axis_uses_whole_steps() -> None:
    assert [nice_ceiling(v) for v in (0, 4, 5, 9, 13, 21, 150)] == [4, 4, 8, 12, 20, 40, 200]
    chart = throughput_chart([])
    assert chart.total == 0 and chart.failure_rate is None
