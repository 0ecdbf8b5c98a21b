"""Many jobs in flight in one child (issue 19): async jobs on the child's event loop, sync
jobs in its threads. Every promise holds per job, on both databases: each job runs exactly
once, a timeout or a cancel ends only its job, a crash records every in-flight job lost (no
attempt used) and they run again, a graceful stop finishes them all."""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from corequeue import enqueue_many
from corequeue.store.queries import Store
from testing.async_jobs import Alone, AsyncSleep, ThreadSleep
from testing.faults import wait_for
from testing.jobs import runs
from tests.reliability.conftest import Spawner, attempts_by_job, state_counts

IMPORTS = ("testing.async_jobs",)


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    yield request.getfixturevalue("pg_store" if request.param == "postgresql" else "sqlite_store")


def url_of(store: Store) -> str:
    return store.url.render_as_string(hide_password=False)


def starts(log: str) -> dict[Any, int]:
    counts: dict[Any, int] = defaultdict(int)
    for run in runs(log):
        if run["event"] == "start":
            counts[run["key"]] += 1
    return counts


def max_overlap(log: str) -> int:
    """The most runs in flight at once in one child process."""
    best = 0
    by_pid: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for run in runs(log):
        by_pid[run["pid"]].append((run["at"], 1 if run["event"] == "start" else -1))
    for marks in by_pid.values():
        level = 0
        for _, step in sorted(marks):
            level += step
            best = max(best, level)
    return best


def wait_started(log: str, count: int, *, timeout: float = 60.0) -> None:
    wait_for(lambda: sum(starts(log).values()) >= count, timeout=timeout, what=f"{count} starts")


def test_500_async_jobs_with_concurrency_100_each_run_exactly_once(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    handles = enqueue_many(AsyncSleep(log, i, 0.2) for i in range(500))
    spawn(url_of(store), "--concurrency", "100", imports=IMPORTS)
    wait_for(
        lambda: state_counts(store)["succeeded"] == 500,
        timeout=90,
        what="500 async jobs to succeed",
    )
    assert starts(log) == {i: 1 for i in range(500)}
    assert state_counts(store) == {"succeeded": 500}
    assert {attempts_used(store, h.id) for h in handles} == {1}
    # 200 ms each: one at a time per child would take 50 s; many run at once in each child.
    assert max_overlap(log) >= 50


def test_timed_out_async_and_threaded_jobs_end_alone(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    (async_hang,) = enqueue_many([AsyncSleep(log, "a-hang", 3600)], timeout=1, retries=0)
    (thread_hang,) = enqueue_many([ThreadSleep(log, "t-hang", 3600)], timeout=1, retries=0)
    siblings = enqueue_many(
        [*(AsyncSleep(log, f"a{i}", 2.5) for i in range(3))]
        + [ThreadSleep(log, f"t{i}", 2.5) for i in range(2)]
    )
    worker = spawn(url_of(store), "--max-processes", "1", "--threads", "4", imports=IMPORTS)
    for handle in siblings:
        assert handle.wait(timeout=60) is not None, worker.log()
    for handle in (async_hang, thread_hang):
        wait_for(lambda: failed(store, handle.id), timeout=30, what="the timeout")  # noqa: B023
    attempts = attempts_by_job(store)
    (a,) = attempts[async_hang.id]
    assert (a.outcome, a.error_type) == ("timed_out", "JobTimeout")
    assert a.error_message == "the job ran past its timeout of 1s"
    (t,) = attempts[thread_hang.id]
    assert (t.outcome, t.error_type) == ("timed_out", "JobTimeout")
    assert "its thread cannot be stopped" in (t.error_message or "")
    assert all(len(attempts[h.id]) == 1 for h in siblings)
    assert starts(log) == {k: 1 for k in ("a-hang", "t-hang", "a0", "a1", "a2", "t0", "t1")}
    # The child with the stuck thread was replaced: the worker still runs jobs.
    (after,) = enqueue_many([AsyncSleep(log, "after", 0)])
    assert after.wait(timeout=60) == "after", worker.log()


def test_cancelling_one_of_many_in_flight_jobs_stops_only_that_one(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    gate = str(tmp_path / "gate")
    async_jobs = enqueue_many(AsyncSleep(log, f"a{i}", 0, gate) for i in range(10))
    thread_jobs = enqueue_many(ThreadSleep(log, f"t{i}", 0, gate) for i in range(3))
    worker = spawn(url_of(store), "--max-processes", "1", "--threads", "4", imports=IMPORTS)
    wait_started(log, 13)
    [child] = worker.children()
    now = datetime.now(UTC)
    store.job_cancel(async_jobs[0].id, now=now)
    store.job_cancel(thread_jobs[0].id, now=now)
    wait_for(lambda: "a0" in events_of(log, "stopped"), timeout=10, what="a0 to be stopped")
    Path(gate).touch()
    for handle in [*async_jobs[1:], *thread_jobs[1:]]:
        assert handle.wait(timeout=60) is not None, worker.log()
    assert async_jobs[0].refresh().state.value == "cancelled"
    assert thread_jobs[0].refresh().state.value == "cancelled"
    assert "a0" not in ends_of(log)  # the async job was stopped in its child
    assert set(starts(log).values()) == {1}
    # The siblings ran to the end in the same child (it was not killed for the async cancel).
    pids = {r["pid"] for r in runs(log) if r["event"] == "end" and r["key"] != "t0"}
    assert pids == {child}


def failed(store: Store, job_id: int) -> bool:
    job = store.job_get(job_id)
    return job is not None and job.state.value == "failed"


def attempts_used(store: Store, job_id: int) -> int:
    job = store.job_get(job_id)
    assert job is not None
    return job.attempts


def ends_of(log: str) -> set[Any]:
    return {r["key"] for r in runs(log) if r["event"] == "end"}


def events_of(log: str, event: str) -> set[Any]:
    return {r["key"] for r in runs(log) if r["event"] == event}


def test_sigkill_of_a_child_with_20_jobs_in_flight_loses_all_20_and_runs_them_again(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    gate = str(tmp_path / "gate")
    handles = enqueue_many(AsyncSleep(log, i, 0, gate) for i in range(20))
    worker = spawn(url_of(store), "--max-processes", "1", imports=IMPORTS)
    wait_started(log, 20)
    [child] = worker.children()
    worker.kill_child(child)
    wait_started(log, 40)  # every one again, in the replacement child
    Path(gate).touch()
    for handle in handles:
        assert handle.wait(timeout=60) is not None, worker.log()
    assert starts(log) == {i: 2 for i in range(20)}
    for handle in handles:
        first, second = attempts_by_job(store)[handle.id]
        assert (first.outcome, first.error_type) == ("lost", "ChildProcessLost")
        assert "killed by SIGKILL" in (first.error_message or "")
        assert "20 jobs in flight" in (first.error_message or "")
        assert second.outcome == "succeeded"
        # Nobody knows which job killed the child: the loss used no attempt.
        assert attempts_used(store, handle.id) == 1


def test_sigterm_finishes_every_in_flight_job_within_the_grace_period(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    handles = enqueue_many(
        [*(AsyncSleep(log, f"a{i}", 1.5) for i in range(20))]
        + [ThreadSleep(log, f"t{i}", 1.5) for i in range(2)]
    )
    worker = spawn(url_of(store), "--max-processes", "1", "--threads", "2", imports=IMPORTS)
    wait_started(log, 22)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=30) == 0, worker.log()
    assert state_counts(store) == {"succeeded": 22}
    assert set(starts(log).values()) == {1} and len(ends_of(log)) == 22
    assert {attempts_used(store, h.id) for h in handles} == {1}


def test_an_exclusive_job_never_shares_its_child(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    handles = enqueue_many(
        [*(AsyncSleep(log, f"a{i}", 0.3) for i in range(10))]
        + [Alone(log, f"x{i}", 0.3) for i in range(2)]
        + [AsyncSleep(log, f"b{i}", 0.3) for i in range(10)]
    )
    worker = spawn(url_of(store), "--max-processes", "1", imports=IMPORTS)
    for handle in handles:
        assert handle.wait(timeout=60) is not None, worker.log()
    marks = sorted((r["at"], r["event"], r["key"]) for r in runs(log))
    inside: set[str] = set()
    for _, event, key in marks:
        if event == "start":
            # An exclusive job starts in an empty child; nothing starts beside one.
            assert not (key.startswith("x") and inside), (key, inside)
            assert not any(k.startswith("x") for k in inside), (key, inside)
            inside.add(key)
        else:
            inside.discard(key)
    assert max_overlap(log) > 1  # the async jobs did share the child


def test_recycling_after_max_jobs_per_process_waits_for_the_async_jobs_in_flight(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    gate = str(tmp_path / "gate")
    first = enqueue_many(AsyncSleep(log, f"a{i}", 0, gate) for i in range(5))
    worker = spawn(
        url_of(store), "--max-processes", "1", "--max-jobs-per-process", "5", imports=IMPORTS
    )
    wait_started(log, 5)  # the child's 5 jobs, all in flight at once
    [child] = worker.children()
    second = enqueue_many(AsyncSleep(log, f"b{i}", 0) for i in range(5))
    # The loop keeps turning (it beats every 0.5 s) past the 5 s a child told to stop gets
    # before it is killed: the child that reached its 5 jobs is not stopped under them, and
    # nothing else starts until they end (the next 5 wait for its replacement).
    started = max(r["at"] for r in runs(log))
    wait_for(
        lambda: any(w.last_beat_at.timestamp() > started + 6 for w in store.worker_list()),
        what="6 s of beats with the jobs in flight",
        detail=worker.log,
    )
    assert worker.children() == [child]
    assert events_of(log, "end") | events_of(log, "stopped") == set()
    assert {h.refresh().state.value for h in second} == {"requested"}
    Path(gate).touch()
    for handle in [*first, *second]:
        assert handle.wait(timeout=60) is not None, worker.log()
    ran_in = {r["key"]: r["pid"] for r in runs(log) if r["event"] == "end"}
    assert {ran_in[f"a{i}"] for i in range(5)} == {child}  # every one ran to its end there
    assert child not in {ran_in[f"b{i}"] for i in range(5)}  # the next ones: a new child
    assert events_of(log, "stopped") == set()
    assert set(starts(log).values()) == {1}
    assert {attempts_used(store, h.id) for h in [*first, *second]} == {1}
