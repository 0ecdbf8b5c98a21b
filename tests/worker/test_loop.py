"""The worker loop: it never sleeps while jobs are ready, and never spins while it waits."""

from __future__ import annotations

import gc
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from corequeue.config import Settings
from corequeue.core.errors import DatabaseUnavailable
from corequeue.core.states import JobState
from corequeue.scheduler import Scheduler
from corequeue.store.queries import Store
from corequeue.worker import GC_THRESHOLD, Worker, tune_gc, utcnow
from testing.e2e import WorkerFactory
from testing.faults import wait_for
from testing.jobs import Add, Record, Sleep, runs
from testing.slow_start import GATE_ENV


def final_counters(log: str) -> dict[str, int]:
    match = re.search(r"worker \S+ stopped: (\{.*\})", log)
    assert match, log
    counters: dict[str, int] = json.loads(match.group(1))
    return counters


def test_a_worker_whose_slots_are_busy_waits_without_spinning(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # A job becomes due while the only slot is busy: the worker must wait for the slot to
    # free up, not loop on a "next job is due" time that has already passed.
    first = Add(0, 0).run_in_worker()
    due_soon = Add(1, 1).run_in_worker(delay=4)
    worker = workers(database_url, "--max-processes", "1", "--max-pending-per-process", "1")
    assert first.wait(timeout=60) == 0  # the worker has seen due_soon: not ready yet
    busy = Sleep(5).run_in_worker(priority=10)

    assert busy.wait(timeout=60) == 5
    assert due_soon.wait(timeout=60) == 2
    assert worker.stop() == 0
    # Each wake-up has a cause (a result, a notification, a poll, a heartbeat); a spinning
    # loop wakes up hundreds of thousands of times in five seconds.
    assert final_counters(worker.log())["wakeups"] < 200, worker.log()


def test_ready_jobs_are_claimed_without_waiting_for_a_poll(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # With the poll interval an hour long, a backlog larger than the claim batch can only
    # drain within the deadline if the worker claims again as soon as slots free up.
    path = str(tmp_path / "runs.jsonl")
    from corequeue import enqueue_many

    handles = enqueue_many(Record(path, i) for i in range(60))
    worker = workers(
        database_url,
        "--max-processes",
        "1",
        "--max-pending-per-process",
        "2",
        "--poll-interval",
        "3600",
        "--heartbeat-interval",
        "3600",
        "--heartbeat-timeout",  # longer than the interval, as the settings require
        "7200",
    )

    assert [h.wait(timeout=60) for h in handles] == list(range(60))
    assert sorted(r["key"] for r in runs(path)) == list(range(60))
    assert worker.stop() == 0


class FlakyStore(Store):
    """A store whose first claims fail as if the database were down."""

    outages = 3

    def job_claim_many(self, *args: Any, **kwargs: Any) -> Any:
        if self.outages:
            self.outages -= 1
            raise DatabaseUnavailable("database unavailable (simulated)")
        return super().job_claim_many(*args, **kwargs)


def test_burst_does_not_mistake_an_outage_for_nothing_ready(
    store: Store, database_url: str
) -> None:
    handle = Add(20, 22).run_in_worker()
    flaky = FlakyStore(store.engine)
    settings = Settings(database_url=database_url, imports=("testing.jobs",), max_processes=1)

    code = Worker(flaky, settings, burst=True).run(install_signals=False)

    assert code == 0
    assert flaky.outages == 0
    assert handle.wait(timeout=5) == 42


def test_claims_wait_while_twice_as_many_endings_as_slots_are_unrecorded(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=database_url, max_processes=2, max_pending_per_process=5)
    worker = Worker(store, settings)
    monkeypatch.setattr(worker.pool, "free_slots", lambda: 10)  # every slot free (no children)
    monkeypatch.setattr(worker.pool, "has_idle_child", lambda: True)
    ending: Any = object()  # _claim_size only counts them

    assert worker._claim_size() == 10
    worker._ends = [ending] * 9
    worker._recording = [ending] * 10
    assert worker._claim_size() == 10  # 19 unrecorded endings, 10 slots: one batch in flight
    worker._ends.append(ending)
    assert worker._claim_size() == 0  # 20: wait for the record lane


def test_no_job_is_claimed_for_a_child_still_starting(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # A job claimed for a child that is still importing would sit "running" with nobody
    # running it (and, in a benchmark, count the child's start-up as the job's time).
    gate = tmp_path / "gate"
    handle = Add(1, 2).run_in_worker()
    worker = workers(
        database_url,
        "--max-processes",
        "1",
        "--poll-interval",
        "0.05",
        "--heartbeat-interval",
        "0.05",
        env={GATE_ENV: str(gate)},
        imports=("testing.jobs", "testing.slow_start"),
    )
    # Children fork from a fork server that imports the application first: the gate holds that
    # import. The loop keeps turning meanwhile (a beat every 0.05 s): a further beat long
    # before the gate gives up (60 s), and still nothing claimed.
    wait_for(lambda: Path(f"{gate}.waiting").exists(), what="the fork server to reach the gate")
    first_beat = wait_for(lambda: [w.last_beat_at for w in store.worker_list()], what="a beat")
    wait_for(
        lambda: [w.last_beat_at for w in store.worker_list()] > first_beat,
        timeout=20,
        what="the next beat while the fork server imports",
        detail=worker.log,
    )
    assert handle.refresh().state is JobState.REQUESTED

    gate.touch()

    assert handle.wait(timeout=60) == 3
    assert worker.stop() == 0


def test_only_services_that_read_this_workers_jobs_wait_for_its_claims_and_records(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Waiting for the claim and the recording under way stalls a busy worker for tens of
    # milliseconds (its children idle meanwhile): the scheduler ticks four times a second.
    calls: list[str] = []

    class Service:
        interval = 60.0

        def __init__(self, name: str, needs_settled: bool) -> None:
            self.name, self.needs_settled = name, needs_settled

        def run_once(self, now: datetime) -> bool:
            calls.append(self.name)
            return False

    worker = Worker(
        store,
        Settings(database_url=database_url),
        services=[Service("reads-own-jobs", True), Service("reads-schedules", False)],
    )
    builtin = {s.name: s.needs_settled for s in worker._services[:3]}
    worker._services = worker._services[3:]
    monkeypatch.setattr(worker, "_settle", lambda: calls.append("settle"))

    worker._maintain(utcnow())

    assert calls == ["settle", "reads-own-jobs", "reads-schedules"]
    # The heartbeat's orphan check compares the database with the jobs this worker holds.
    assert builtin == {"heartbeat": True, "rescuer": False, "pruner": False}
    assert Scheduler.needs_settled is False


def test_the_worker_process_freezes_its_start_up_objects_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        # What existed at start-up is left out of every later collection...
        assert gc.get_freeze_count() > 0
        # ...and a collection waits for 10,000 new objects (a busy worker holds thousands of
        # jobs in flight), the older generations' thresholds unchanged.
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_an_idle_worker_woken_by_an_enqueue_claims_before_its_other_checks(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The idle pick-up latency is the claim: the maintenance checks of the loop's next turn
    # come after it, not between the notification and the claim.
    calls: list[str] = []

    class Stop(Exception):
        pass

    worker = Worker(store, Settings(database_url=database_url))
    pool = worker.pool
    monkeypatch.setattr(pool, "start", lambda: None)
    monkeypatch.setattr(pool, "collect", lambda ready=None: [])
    monkeypatch.setattr(pool, "check_timeouts", lambda: [])
    monkeypatch.setattr(worker, "_claim_size", lambda: 1)
    monkeypatch.setattr(worker, "_start_claim", lambda limit, now: calls.append("claim"))

    def maintain(now: datetime) -> None:
        calls.append("maintain")
        if calls.count("maintain") == 2:
            raise Stop

    def wait(timeout: float | None, extra: Any = ()) -> list[Any]:
        worker.wake.set()  # as the LISTEN thread does on a notification
        return []

    monkeypatch.setattr(worker, "_maintain", maintain)
    monkeypatch.setattr(pool, "wait", wait)

    with pytest.raises(Stop):
        worker._loop()

    assert calls == ["maintain", "claim", "claim", "maintain"]
