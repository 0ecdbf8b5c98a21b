"""The Scheduler service on SQLite and PostgreSQL, ticked with ``run_once(now)`` at injected
instants: each occurrence fires once, across several schedulers, restarts, gaps, changed and
removed schedules, and time zones."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from corequeue.core.states import JobState
from corequeue.scheduler import Scheduler
from corequeue.store.queries import Store
from corequeue.store.schedules import schedule_fire
from tests.scheduler.conftest import (
    TICK,
    at,
    definitions,
    enqueued,
    every_minute,
    instants,
    minute,
    run,
    stored,
)


def test_each_occurrence_fires_once_at_its_time(store: Store) -> None:
    scheduler = Scheduler(store, definitions({"every-minute": every_minute()}))
    scheduler.run_once(at(12, 0))  # first seen: occurrences after this instant fire
    assert enqueued(store, "every-minute") == []
    scheduler.run_once(at(12, 0, 59, 999_999))
    assert enqueued(store, "every-minute") == []  # not a period ahead
    scheduler.run_once(minute(12, 1))  # exactly at the occurrence: due
    assert enqueued(store, "every-minute") == [minute(12, 1)]
    # Ticks every 0.25 s: each later occurrence once, however many ticks see it.
    run([scheduler], at(12, 1), at(12, 5, 10), timedelta(seconds=0.25))
    assert enqueued(store, "every-minute") == [minute(12, m) for m in range(1, 6)]
    row = stored(store)["every-minute"]
    assert row.last_occurrence == minute(12, 5)
    assert row.last_job_state == JobState.REQUESTED
    assert row.job == TICK


def test_an_occurrence_exactly_at_first_seen_does_not_fire(store: Store) -> None:
    # The schedule exists from first_seen on; occurrences strictly after it fire. (A changed
    # expression is "first seen" at its change: the old one may have fired that very instant.)
    scheduler = Scheduler(store, definitions({"every-minute": every_minute()}))
    scheduler.run_once(minute(12, 0))
    scheduler.run_once(minute(12, 0) + timedelta(milliseconds=1))
    assert enqueued(store, "every-minute") == []
    scheduler.run_once(minute(12, 1))
    assert enqueued(store, "every-minute") == [minute(12, 1)]


def test_two_schedulers_ticking_the_same_instants_fire_each_occurrence_once(
    store: Store,
) -> None:
    config = {"every-minute": every_minute(), "every-20s": every_minute(cron="* * * * * */20")}
    a = Scheduler(store, definitions(config))
    b = Scheduler(store, definitions(config))
    for i, t in enumerate(instants(at(12, 0), at(12, 10), timedelta(seconds=5))):
        first, second = (a, b) if i % 2 else (b, a)  # interleaved, each one first in turn
        first.run_once(t)
        second.run_once(t + timedelta(milliseconds=i % 3))
    assert enqueued(store, "every-minute") == [minute(12, m) for m in range(1, 11)]
    expected = [
        minute(12, 0) + timedelta(seconds=20 * k) for k in range(1, 31)
    ]  # 12:00:20 ... 12:10:00
    assert enqueued(store, "every-20s") == expected


def test_a_scheduler_with_a_stale_view_changes_nothing(store: Store) -> None:
    a = Scheduler(store, definitions({"every-minute": every_minute()}))
    b = Scheduler(store, definitions({"every-minute": every_minute()}))
    a.run_once(at(12, 0))
    b.run_once(at(12, 0))
    a.run_once(at(12, 3))  # far ahead: fires 12:03 (skip: 12:01 and 12:02 are missed)
    b.run_once(at(12, 1))  # behind a's clock: reads 12:03 as the last occurrence, fires nothing
    b.run_once(at(12, 2))
    assert enqueued(store, "every-minute") == []  # skip: several due at once at 12:03
    a.run_once(at(12, 4))
    b.run_once(at(12, 4))
    assert enqueued(store, "every-minute") == [minute(12, 4)]


def test_concurrent_schedulers_fire_each_occurrence_once(store: Store) -> None:
    """Four schedulers in threads tick the same instants at the same time: the database's
    compare-and-set lets exactly one of them fire each occurrence."""
    config = {"every-10s": every_minute(cron="* * * * * */10")}
    schedulers = [Scheduler(store, definitions(config)) for _ in range(4)]
    ticks = list(instants(at(12, 0), at(12, 3), timedelta(seconds=2.5)))
    barrier = threading.Barrier(len(schedulers))
    errors: list[BaseException] = []

    def work(s: Scheduler) -> None:
        try:
            for t in ticks:
                barrier.wait(timeout=60)
                s.run_once(t)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    expected = [minute(12, 0) + timedelta(seconds=10 * k) for k in range(1, 19)]
    assert enqueued(store, "every-10s") == expected


def test_the_compare_and_set_round_trips_microseconds(store: Store) -> None:
    """The stored last occurrence compares equal to what was read, on both engines."""
    (definition,) = definitions({"s": every_minute()})
    scheduler = Scheduler(store, [definition])
    scheduler.run_once(at(12, 0))
    row = stored(store)["s"]
    odd = datetime(2024, 3, 1, 12, 0, 0, 123_457, tzinfo=UTC)
    fired = schedule_fire(
        store,
        definition.spec,
        seen_last=None,
        seen_first_seen=row.first_seen_at,
        new_last=odd,
        job=None,
        now=at(12, 0),
    )
    assert fired is not None
    assert stored(store)["s"].last_occurrence == odd
    again = dict(seen_last=None, new_last=odd, job=None, now=at(12, 0))
    assert schedule_fire(store, definition.spec, **again) is None  # type: ignore[arg-type]
    after = dict(seen_last=odd, new_last=odd + timedelta(seconds=1), job=None, now=at(12, 0))
    assert schedule_fire(store, definition.spec, **after) is not None  # type: ignore[arg-type]
    assert schedule_fire(store, definition.spec, **after) is None  # type: ignore[arg-type]


def test_a_restart_neither_repeats_nor_skips(store: Store) -> None:
    config = {"every-minute": every_minute()}
    first = Scheduler(store, definitions(config))
    run([first], at(12, 0), at(12, 3, 50))
    # The worker stops; a new one starts 20 s later, within the same period.
    second = Scheduler(store, definitions(config))
    run([second], at(12, 4, 10), at(12, 7))
    # And once more, restarting just before an occurrence and ticking just after it.
    third = Scheduler(store, definitions(config))
    run([third], minute(12, 8) - timedelta(milliseconds=1), at(12, 10, 1), timedelta(seconds=0.5))
    assert enqueued(store, "every-minute") == [minute(12, m) for m in range(1, 11)]


@pytest.mark.parametrize(
    ("missed", "expected", "skipped"),
    [
        # Down from 12:01:30 to 12:10:30: 12:02 ... 12:10 (9 occurrences) were missed.
        ("skip", [minute(12, 1), minute(12, 11), minute(12, 12)], 9),
        ("latest", [minute(12, 1), minute(12, 10), minute(12, 11), minute(12, 12)], 8),
    ],
)
def test_missed_policies_after_the_workers_were_down(
    store: Store,
    caplog: pytest.LogCaptureFixture,
    missed: str,
    expected: list[datetime],
    skipped: int,
) -> None:
    config = {"nightly": every_minute(missed=missed)}
    run([Scheduler(store, definitions(config))], at(12, 0), at(12, 1, 30))
    assert enqueued(store, "nightly") == [minute(12, 1)]
    caplog.set_level(logging.INFO, logger="corequeue.scheduler")
    after = Scheduler(store, definitions(config))
    after.run_once(at(12, 10, 30))
    assert stored(store)["nightly"].last_occurrence == minute(12, 10)
    run([after], at(12, 10, 40), at(12, 12, 30))
    assert enqueued(store, "nightly") == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"schedule nightly: {skipped} missed occurrence(s) not enqueued (missed={missed})"
    ]


def test_a_changed_expression_replaces_the_old_one(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    old = Scheduler(store, definitions({"report": every_minute()}))
    run([old], at(12, 0), at(12, 2, 30))
    assert enqueued(store, "report") == [minute(12, 1), minute(12, 2)]
    # A rolling deploy: a worker with the new expression starts while the old one still runs.
    caplog.set_level(logging.WARNING, logger="corequeue.scheduler")
    new = Scheduler(store, definitions({"report": every_minute(cron="*/5 * * * *")}))
    new.run_once(at(12, 2, 40))
    assert stored(store)["report"].expression == "*/5 * * * *"
    assert stored(store)["report"].last_occurrence is None
    # Both keep ticking (the old one resyncs every 30 s): the old expression never fires again,
    # the old worker never brings it back, and the new one fires from its change on.
    run([old, new], at(12, 2, 50), at(12, 12, 30))
    assert enqueued(store, "report") == [minute(12, m) for m in (1, 2, 5, 10)]
    assert stored(store)["report"].expression == "*/5 * * * *"
    assert any("a worker started later stores another" in r.getMessage() for r in caplog.records)
    # Once the old worker is gone for good, the new definition simply goes on.
    run([new], at(12, 12, 40), at(12, 15, 30))
    assert enqueued(store, "report")[-1] == minute(12, 15)


def test_a_changed_zone_or_job_also_starts_afresh(store: Store) -> None:
    first = Scheduler(store, definitions({"r": every_minute()}))
    run([first], at(12, 0), at(12, 1, 30))
    zoned = Scheduler(store, definitions({"r": every_minute(timezone="Asia/Kolkata")}))
    run([zoned], at(12, 1, 40), at(12, 2, 30))  # UTC+5:30: every minute still
    other_job = Scheduler(
        store, definitions({"r": every_minute(job="testing.schedule_jobs.Report")})
    )
    run([other_job], at(12, 2, 40), at(12, 3, 30))
    assert enqueued(store, "r") == [minute(12, 1), minute(12, 2), minute(12, 3)]
    row = stored(store)["r"]
    assert (row.job, row.timezone) == ("testing.schedule_jobs.Report", "UTC")


def test_an_old_worker_takes_over_again_when_the_newer_one_is_gone(store: Store) -> None:
    old = Scheduler(store, definitions({"r": every_minute()}))
    run([old], at(12, 0), at(12, 0, 30))
    new = Scheduler(store, definitions({"r": every_minute(cron="*/5 * * * *")}))
    new.run_once(at(12, 0, 40))
    # The newer worker stops; after the stored definition goes stale the old one applies its own.
    run([old], at(12, 0, 50), at(12, 5, 30))
    assert stored(store)["r"].expression == "* * * * *"
    fired = enqueued(store, "r")
    assert minute(12, 1) not in fired and fired[-1] == minute(12, 5)


def test_a_removed_schedule_stops_firing_and_its_row_is_deleted(store: Store) -> None:
    both = {"keep": every_minute(), "drop": every_minute(cron="*/2 * * * *")}
    old = Scheduler(store, definitions(both))
    run([old], at(12, 0), at(12, 4, 30))
    assert enqueued(store, "drop") == [minute(12, 2), minute(12, 4)]
    # The deploy removes "drop": the old worker stops, a new one runs without it.
    new = Scheduler(store, definitions({"keep": every_minute()}))
    run([new], at(12, 4, 40), at(12, 9, 30))
    assert enqueued(store, "drop") == [minute(12, 2), minute(12, 4)]  # never fired again
    assert "drop" not in stored(store)  # deleted once no worker configured with it touched it
    assert enqueued(store, "keep") == [minute(12, m) for m in range(1, 10)]


def test_a_worker_without_the_schedule_leaves_it_alone(store: Store) -> None:
    """Workers may run different configurations (another --import, another queue): a worker
    that does not know a schedule does not delete it while workers that know it run."""
    owner = Scheduler(store, definitions({"every-minute": every_minute()}))
    other = Scheduler(store, [])
    run([owner, other], at(12, 0), at(12, 10, 30))
    assert enqueued(store, "every-minute") == [minute(12, m) for m in range(1, 11)]
    assert stored(store)["every-minute"].first_seen_at == at(12, 0)


def test_a_zoned_schedule_fires_at_its_wall_clock_time(store: Store) -> None:
    config = {
        "paris-9am": {
            "job": "tick",
            "cron": "0 9 * * *",
            "timezone": "Europe/Paris",
            "args": ["p"],
        },
        "paris-230": {
            "job": "tick",
            "cron": "30 2 * * *",
            "timezone": "Europe/Paris",
            "args": ["q"],
        },
        "ny-noon": {
            "job": "tick",
            "cron": "0 12 * * *",
            "timezone": "America/New_York",
            "args": ["n"],
        },
    }
    scheduler = Scheduler(store, definitions(config))
    start = datetime(2024, 3, 29, 0, 0, 0, 300_000, tzinfo=UTC)
    end = datetime(2024, 4, 1, 23, 0, tzinfo=UTC)
    # Ticks every 10 minutes, plus one just before and one just after each expected instant.
    expected_paris = [
        datetime(2024, 3, 29, 8, tzinfo=UTC),  # 09:00 CET
        datetime(2024, 3, 30, 8, tzinfo=UTC),
        datetime(2024, 3, 31, 7, tzinfo=UTC),  # 09:00 CEST: DST began that night
        datetime(2024, 4, 1, 7, tzinfo=UTC),
    ]
    extra = [t + d for t in expected_paris for d in (timedelta(microseconds=-1), timedelta(0))]
    ticks = sorted({*instants(start, end, timedelta(minutes=10)), *extra})
    for t in ticks:
        scheduler.run_once(t)
        if t + timedelta(microseconds=1) in expected_paris:
            assert enqueued(store, "paris-9am")[-1:] != [t + timedelta(microseconds=1)]
    assert enqueued(store, "paris-9am") == expected_paris
    # 02:30 does not exist on 2024-03-31 in Paris: it fires once, at the end of the gap (03:00
    # CEST = 01:00 UTC); the ticks every 10 minutes see it 0.3 s late, which is on time.
    assert enqueued(store, "paris-230") == [
        datetime(2024, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2024, 3, 30, 1, 30, tzinfo=UTC),
        datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
        datetime(2024, 4, 1, 0, 30, tzinfo=UTC),
    ]
    # New York was already on EDT (from 2024-03-10): noon is 16:00 UTC.
    assert enqueued(store, "ny-noon") == [
        datetime(2024, 3, d, 16, tzinfo=UTC) for d in (29, 30, 31)
    ] + [datetime(2024, 4, 1, 16, tzinfo=UTC)]


def test_a_scheduled_job_carries_its_args_kwargs_queue_and_priority(store: Store) -> None:
    config = {
        "report": {
            "job": "testing.schedule_jobs.Report",
            "cron": "* * * * *",
            "args": ["weekly"],
            "kwargs": {"pages": 3},
            "queue": "reports",
            "priority": 5,
        }
    }
    scheduler = Scheduler(store, definitions(config))
    scheduler.run_once(at(12, 0))
    scheduler.run_once(at(12, 1))
    row = stored(store)["report"]
    assert row.last_job_id is not None
    job = store.job_get(row.last_job_id)
    assert job is not None
    assert (job.queue, job.priority, job.run_at) == ("reports", 5, minute(12, 1))
    assert "weekly" in job.params and "pages" in job.params
