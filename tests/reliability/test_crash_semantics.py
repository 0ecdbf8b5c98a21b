"""Crash semantics with real worker processes: a dead worker never uses up an attempt of the
jobs it held, a job that takes its worker down every time ends as a crash loop, a job no worker
can resolve yet waits for one that can (a rolling deploy), deferrals are bounded, and a module
outside the worker's imports is never imported."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from corequeue import enqueue_many
from corequeue.core.states import JobState, Outcome
from corequeue.store import schema
from corequeue.store.queries import Store
from testing.deploy_jobs import NewCode
from testing.faults import WorkerProcess, wait_for
from testing.reliability_jobs import DeferForever, RaiseBadMessage, Touch, run_counts, runs
from tests.reliability.conftest import Spawner, attempts_by_job, state_counts


def _url(store: Store) -> str:
    return store.url.render_as_string(hide_password=False)


@pytest.fixture(params=["postgresql", "sqlite"])
def any_store(request: pytest.FixtureRequest) -> Store:
    """The reliability fixtures' PostgreSQL or SQLite store, configured process-wide."""
    name = "pg_store" if request.param == "postgresql" else "sqlite_store"
    store: Store = request.getfixturevalue(name)
    return store


def test_a_job_that_kills_its_worker_every_time_ends_as_a_crash_loop(
    any_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    url = _url(any_store)
    others = enqueue_many([Touch(log, i, 0.1) for i in range(6)], retries=0)
    loop = Touch(log, "loop", 60).run_in_worker(retries=5)
    fleet: dict[int, WorkerProcess] = {}

    def start() -> None:
        worker = spawn(url, "--max-processes", "2")
        fleet[worker.pid] = worker

    start()
    for n in range(1, 4):
        # The job begins: the test kills the worker running it (as the OOM killer would).
        run = wait_for(
            lambda n=n: len(hits := [r for r in runs(log) if r["key"] == "loop"]) >= n and hits,
            timeout=60,
            what=f"run {n} of the crash-looping job\n{spawn.logs()}",
        )
        fleet.pop(run[n - 1]["worker"]).kill()
        start()  # a live worker rescues the job (and runs it again, until the loop ends)

    job = wait_for(
        lambda: (j := any_store.job_get(loop.id)) is not None and j.state is JobState.FAILED and j,
        timeout=60,
        what=f"the crash loop to end\n{spawn.logs()}",
    )
    assert "max_worker_losses = 3 reached, it looks like a crash loop" in (job.error or "")
    assert job.attempts == 0  # none of the three losses used an attempt
    rows = attempts_by_job(any_store)[loop.id]
    assert [r.outcome for r in rows] == [Outcome.LOST] * 3
    assert run_counts(log)["loop"] == 3
    assert [h.wait(timeout=60) for h in others] == list(range(6))
    assert state_counts(any_store) == {"succeeded": 6, "failed": 1}


def test_a_rolling_deploy_runs_the_new_job_without_using_an_attempt(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    url = _url(pg_store)
    old = spawn(url)  # imports testing.reliability_jobs only: the old code
    handle = NewCode(log, "new").run_in_worker(retries=0)
    wait_for(
        lambda: attempts_by_job(pg_store).get(handle.id),
        timeout=60,
        what=f"the old worker to try the job\n{spawn.logs()}",
    )
    job = pg_store.job_get(handle.id)
    assert job is not None and job.state is JobState.REQUESTED and job.attempts == 0
    (row,) = attempts_by_job(pg_store)[handle.id]
    assert row.error_type == "corequeue.core.errors.UnknownJobError"
    assert "requeued without using an attempt" in (row.error_message or "")
    assert runs(log) == []

    spawn(url, imports=("testing.reliability_jobs", "testing.deploy_jobs"))  # the new code
    assert handle.wait(timeout=60) == "new"
    job = pg_store.job_get(handle.id)
    assert job is not None and job.attempts == 1  # only the run used one: retries=0 was enough
    assert run_counts(log) == {"new": 1}
    assert old.returncode is None


def test_a_job_named_outside_the_workers_imports_is_never_imported(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    handle = Touch(str(tmp_path / "runs.jsonl"), "x").run_in_worker()
    with pg_store.engine.begin() as conn:
        conn.execute(
            sa.update(schema.jobs).where(schema.jobs.c.id == handle.id).values(name="this.Zen")
        )
    worker = spawn(_url(pg_store), "--burst", env={"COREQUEUE_UNKNOWN_JOB_TIMEOUT": "0"})
    assert worker.wait_exit(60) == 0, worker.log()
    job = pg_store.job_get(handle.id)
    assert job is not None and job.state is JobState.FAILED
    assert "no job is registered as 'this.Zen'" in (job.error or "")
    assert "add 'this' to them if it should run this job" in (job.error or "")
    assert "Beautiful is better than ugly" not in worker.log()  # `this` prints on import


def test_a_job_that_always_defers_fails_after_max_deferrals(
    any_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    handle = DeferForever(log, "d").run_in_worker(retries=0)
    worker = spawn(_url(any_store), "--burst", env={"COREQUEUE_MAX_DEFERRALS": "3"})
    assert worker.wait_exit(60) == 0, worker.log()
    job = any_store.job_get(handle.id)
    assert job is not None and job.state is JobState.FAILED
    assert "deferred itself more than max_deferrals = 3 times" in (job.error or "")
    assert run_counts(log) == {"d": 4}  # three deferrals kept it, the fourth failed it
    rows = attempts_by_job(any_store)[handle.id]
    assert [r.outcome for r in rows] == [Outcome.DEFERRED] * 4


def test_an_exception_whose_str_raises_is_recorded_errored(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    handle = RaiseBadMessage(log, "b").run_in_worker(retries=0)
    worker = spawn(_url(pg_store), "--burst")
    assert worker.wait_exit(60) == 0, worker.log()
    (row,) = attempts_by_job(pg_store)[handle.id]
    assert row.outcome == Outcome.ERRORED
    assert row.error_type == "testing.reliability_jobs.BadMessage"
    assert row.error_message == (
        "<the message of this BadMessage could not be built: its __str__ raised RuntimeError>"
    )
    assert run_counts(log) == {"b": 1}


def _kill_fleet_test(
    store: Store, spawn: Spawner, tmp_path: Path, *, jobs: int, low: float, high: float
) -> None:
    """``jobs`` jobs of ``low``-``high`` seconds with retries=0 on 3 workers; two of them
    SIGKILLed at random moments while jobs run (and replaced, so that 3 keep serving). Every
    job succeeds, and runs at most once more than the kills that hit it while running."""
    log = str(tmp_path / "runs.jsonl")
    url = _url(store)
    rng = random.Random(17)
    handles = enqueue_many(
        [Touch(log, i, round(rng.uniform(low, high), 3)) for i in range(jobs)], retries=0
    )
    fleet = [spawn(url, "--max-processes", "2") for _ in range(3)]
    killed: dict[int, float] = {}  # worker pid -> when it was killed
    for target in rng.sample(range(3), 2):
        started = len(runs(log))
        goal = started + rng.randint(jobs // 10, jobs // 5)
        wait_for(lambda g=goal: len(runs(log)) >= g, timeout=120, what=f"{goal} runs")
        victim = fleet[target]
        victim.kill()
        killed[victim.pid] = time.time()
        fleet[target] = spawn(url, "--max-processes", "2")
    deadline = 60 + jobs * high
    for handle in handles:
        assert handle.wait(timeout=deadline) is not None, spawn.logs()
    assert state_counts(store) == {"succeeded": jobs}
    counts = run_counts(log)
    # A kill hit a run when the run was under the killed worker and began before the kill.
    hits: Counter[Any] = Counter(
        r["key"] for r in runs(log) if r["worker"] in killed and r["at"] <= killed[r["worker"]]
    )
    for i in range(jobs):
        assert 1 <= counts[i] <= 1 + hits[i], (i, counts[i], hits[i])
    for handle in handles:
        job = store.job_get(handle.id)
        assert job is not None and job.attempts == 1  # retries=0: losses used none


def test_killed_workers_never_fail_a_job(any_store: Store, spawn: Spawner, tmp_path: Path) -> None:
    """The issue's fault test as stated: 3 workers, 300 jobs of 50-500 ms, two SIGKILLed (about
    25 s per database on two shared cores)."""
    _kill_fleet_test(any_store, spawn, tmp_path, jobs=300, low=0.05, high=0.5)
