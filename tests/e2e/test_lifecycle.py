"""The job lifecycle end to end: jobs enqueued through the public API, run by real
``corequeue run`` processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

import corequeue
from corequeue import JobFailed, JobState, JobTimeout, Outcome
from corequeue.store.queries import Store
from testing.e2e import WorkerFactory, wait_for
from testing.jobs import (
    Add,
    DeferTimes,
    DelayedRetry,
    EnqueueRecord,
    Fail,
    Record,
    Sleep,
    runs,
)


def finished_count(store: Store) -> int:
    return sum(n for _, state, n in store.job_count_many() if state.is_final)


def states(store: Store, ids: list[int]) -> Counter[str]:
    return Counter(store.job_get(i).state.value for i in ids)  # type: ignore[union-attr]


def test_hundreds_of_jobs_each_run_exactly_once(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    handles = corequeue.enqueue_many(Record(path, i) for i in range(300))

    worker = workers(database_url, "--burst")

    assert worker.wait_exit() == 0, worker.log()
    assert sorted(r["key"] for r in runs(path)) == list(range(300))
    assert states(store, [h.id for h in handles]) == {"succeeded": 300}
    assert "database is locked" not in worker.log()


def test_two_workers_at_once_never_run_a_job_twice(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    both = [workers(database_url, "--poll-interval", "0.1") for _ in range(2)]
    wait_for(lambda: len(store.worker_list()) == 2, what="both workers to register")

    handles = corequeue.enqueue_many(Record(path, i, sleep=0.01) for i in range(300))

    wait_for(lambda: finished_count(store) == 300, what="all 300 jobs to finish")
    assert [worker.stop() for worker in both] == [0, 0]
    recorded = runs(path)
    assert sorted(r["key"] for r in recorded) == list(range(300))  # each exactly once
    assert states(store, [h.id for h in handles]) == {"succeeded": 300}
    assert {r["ppid"] for r in recorded} == {both[0].pid, both[1].pid}  # both took part
    for worker in both:
        assert "database is locked" not in worker.log()
        assert "Traceback" not in worker.log()


def test_priority_then_fifo_order_with_one_child(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    priorities = [0, 5, 0, 10, 5, -1, 10, 0, 5, -1]
    for i, priority in enumerate(priorities):
        Record(path, i).run_in_worker(priority=priority)
    expected = sorted(range(len(priorities)), key=lambda i: (-priorities[i], i))

    worker = workers(
        database_url, "--burst", "--max-processes", "1", "--max-pending-per-process", "1"
    )

    assert worker.wait_exit() == 0, worker.log()
    assert [r["key"] for r in runs(path)] == expected


def test_a_delayed_job_does_not_run_early(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    delayed = Record(path, "later").run_in_worker(delay=1.5)
    now = Record(path, "now").run_in_worker()
    job = store.job_get(delayed.id)
    assert job is not None
    run_at = job.run_at

    worker = workers(database_url)

    assert delayed.wait(timeout=60) == "later"
    assert now.wait(timeout=60) == "now"
    ran = {r["key"]: r["at"] for r in runs(path)}
    assert ran["later"] >= run_at.timestamp()
    assert worker.stop() == 0


def test_a_failing_job_with_two_retries_runs_three_times_and_fails_with_its_traceback(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    handle = Fail(path, "f").run_in_worker(retries=2)

    worker = workers(database_url, "--burst")

    assert worker.wait_exit() == 0, worker.log()
    assert len(runs(path)) == 3
    job = handle.refresh().record
    assert job is not None
    assert (job.state, job.attempts, job.max_attempts) == (JobState.FAILED, 3, 3)
    assert job.error == "RuntimeError: boom f"
    attempts = store.attempt_list(handle.id)
    assert [(a.attempt, a.outcome) for a in attempts] == [
        (1, Outcome.ERRORED),
        (2, Outcome.ERRORED),
        (3, Outcome.ERRORED),
    ]
    for attempt in attempts:
        assert attempt.error_type == "RuntimeError"
        assert attempt.traceback is not None
        assert attempt.traceback.startswith("Traceback (most recent call last):")
        assert 'raise RuntimeError(f"boom {self.key}")' in attempt.traceback
        assert "testing/jobs.py" in attempt.traceback
    with pytest.raises(JobFailed, match="RuntimeError: boom f"):
        handle.wait(timeout=5)


def test_defer_without_increment_runs_again_without_using_attempts(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    handle = DeferTimes(path, "d", times=3).run_in_worker(retries=0)

    worker = workers(database_url, "--burst")

    assert worker.wait_exit() == 0, worker.log()
    assert handle.wait(timeout=5) == "done"
    assert len(runs(path)) == 4  # three deferrals, then the run that succeeded
    assert handle.record is not None
    assert (handle.record.attempts, handle.record.max_attempts) == (1, 1)
    outcomes = [a.outcome for a in store.attempt_list(handle.id)]
    assert outcomes == [Outcome.DEFERRED] * 3 + [Outcome.SUCCEEDED]


def test_defer_with_increment_retries_fails_once_attempts_run_out(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    handle = DeferTimes(path, "d", times=100, increment_retries=True).run_in_worker(retries=2)

    worker = workers(database_url, "--burst")

    assert worker.wait_exit() == 0, worker.log()
    assert len(runs(path)) == 3
    with pytest.raises(JobFailed):
        handle.wait(timeout=5)
    assert handle.record is not None
    assert (handle.record.state, handle.record.attempts) == (JobState.FAILED, 3)
    outcomes = [a.outcome for a in store.attempt_list(handle.id)]
    assert outcomes == [Outcome.DEFERRED] * 3


def test_wait_returns_the_result_and_raises_for_failures_and_timeouts(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    added = Add(2, 40).run_in_worker()
    failed = Fail(str(tmp_path / "runs.jsonl"), "x").run_in_worker()
    with pytest.raises(JobTimeout, match=f"job {added.id} is still requested after 0.2s"):
        added.wait(timeout=0.2)

    worker = workers(database_url)

    assert added.wait(timeout=60) == 42
    with pytest.raises(JobFailed, match=rf"job {failed.id} \(testing.jobs.Fail\) failed: "):
        failed.wait(timeout=60)
    assert worker.stop() == 0


def test_the_worker_logs_one_line_per_finished_job(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    handles = corequeue.enqueue_many([Add(i, i) for i in range(5)], queue="maths")

    worker = workers(database_url, "--burst")

    assert worker.wait_exit() == 0, worker.log()
    for handle in handles:
        (line,) = [
            line for line in worker.log().splitlines() if f"finished job_id={handle.id} " in line
        ]
        assert re.search(
            rf"job_id={handle.id} name=testing\.jobs\.Add queue=maths attempt=1 "
            r"outcome=succeeded state=succeeded duration_ms=\d+\.\d",
            line,
        ), line


def test_burst_exits_zero_at_once_when_nothing_is_ready(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    later = Sleep(0).run_in_worker(delay=3600)

    worker = workers(database_url, "--burst")

    assert worker.wait_exit() == 0, worker.log()
    assert "burst: nothing ready, exiting" in worker.log()
    assert later.refresh().state is JobState.REQUESTED


def test_children_are_recycled_after_max_jobs_per_process(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    corequeue.enqueue_many(Record(path, i) for i in range(20))

    worker = workers(database_url, "--burst", "--max-processes", "1", "--max-jobs-per-process", "5")

    assert worker.wait_exit() == 0, worker.log()
    recorded = runs(path)
    assert sorted(r["key"] for r in recorded) == list(range(20))
    per_child = Counter(r["pid"] for r in recorded)
    assert len(per_child) == 4
    assert set(per_child.values()) == {5}
    assert {r["ppid"] for r in recorded} == {worker.pid}


def test_middleware_configured_by_dotted_path_wraps_run(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    handle = Add(1, 2).run_in_worker()

    worker = workers(
        database_url, "--burst", env={"COREQUEUE_MIDDLEWARE": "testing.jobs.WrapResult"}
    )

    assert worker.wait_exit() == 0, worker.log()
    assert handle.wait(timeout=5) == {"wrapped": 3, "by": "testing.jobs.WrapResult"}


def test_an_unregistered_job_in_the_table_fails_with_a_clear_message_and_others_run(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    from corequeue.store.records import NewJob

    now = datetime.now(UTC)
    (unknown,) = store.job_insert_many(
        [
            NewJob(
                "testing.jobs.NoSuchJob",
                '{"args":[],"kwargs":{}}',
                "default",
                5,
                now,
                1,
                None,
                "",
                "inserted by hand",
            )
        ],
        now=now,
    )
    others = corequeue.enqueue_many([Add(i, 1) for i in range(10)])

    # An unknown name fails once it has stayed unresolvable for unknown_job_timeout (issue 17:
    # until then it waits for a worker that knows it); here that is at once.
    worker = workers(database_url, "--burst", env={"COREQUEUE_UNKNOWN_JOB_TIMEOUT": "0"})

    assert worker.wait_exit() == 0, worker.log()
    job = store.job_get(unknown.id)
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "no job is registered as 'testing.jobs.NoSuchJob'" in job.error
    assert [h.wait(timeout=5) for h in others] == [i + 1 for i in range(10)]


def test_a_job_past_its_timeout_is_killed_and_the_worker_goes_on(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    slow = Sleep(60).run_in_worker(timeout=1)
    quick = Add(1, 1).run_in_worker()

    worker = workers(database_url, "--burst", "--max-processes", "1")

    assert worker.wait_exit() == 0, worker.log()
    assert quick.wait(timeout=5) == 2
    with pytest.raises(JobFailed, match="timeout of 1s"):
        slow.wait(timeout=5)
    assert [a.outcome for a in store.attempt_list(slow.id)] == [Outcome.TIMED_OUT]


def test_a_retry_runs_as_soon_as_its_delay_passes(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # With polling and heartbeats an hour apart, the retry runs within the test's deadline
    # only if the worker wakes up for it by itself.
    path = str(tmp_path / "runs.jsonl")
    handle = DelayedRetry(path, "r").run_in_worker(retries=1)

    worker = workers(
        database_url,
        "--poll-interval",
        "3600",
        "--heartbeat-interval",
        "3600",
        "--heartbeat-timeout",  # longer than the interval, as the settings require
        "7200",
    )

    with pytest.raises(JobFailed):
        handle.wait(timeout=60)
    first, second = runs(path)
    assert second["at"] - first["at"] >= 1.0
    assert worker.stop() == 0


def test_a_job_can_enqueue_another_job(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.jsonl")
    parent = EnqueueRecord(path, "child").run_in_worker()

    worker = workers(database_url, "--burst")

    assert worker.wait_exit() == 0, worker.log()
    child_id = parent.wait(timeout=5)
    child = store.job_get(child_id)
    assert child is not None
    assert (child.name, child.state) == ("testing.jobs.Record", JobState.SUCCEEDED)
    assert child.source.endswith("testing/jobs.py:" + str(child_source_line()))
    assert [r["key"] for r in runs(path)] == ["child"]


def child_source_line() -> int:
    import inspect

    from testing import jobs

    lines, start = inspect.getsourcelines(jobs.EnqueueRecord.run)
    return start + next(i for i, line in enumerate(lines) if "run_in_worker" in line)


def test_a_worker_serves_only_the_queues_it_is_given(
    store: Store, database_url: str, workers: WorkerFactory
) -> None:
    mail = Add(1, 1).run_in_worker(queue="mail")
    other = Add(2, 2).run_in_worker(queue="reports")
    default = Add(3, 3).run_in_worker()

    worker = workers(database_url, "--burst", "--queue", "mail", "--queue", "default")

    assert worker.wait_exit() == 0, worker.log()
    assert (mail.wait(timeout=5), default.wait(timeout=5)) == (2, 6)
    assert other.refresh().state is JobState.REQUESTED
