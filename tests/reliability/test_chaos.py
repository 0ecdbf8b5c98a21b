"""Several hundred short jobs across three workers while workers are SIGKILLed and restarted at
random: every job ends succeeded, its result recorded exactly once, and the only jobs that ran
more than once were running on a killed worker (cross-checked with the ``lost`` attempts)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from corequeue import enqueue_many
from corequeue.store.queries import Store
from testing.faults import WorkerProcess, alive, wait_for
from testing.reliability_jobs import Touch, runs
from tests.reliability.conftest import Spawner, attempts_by_job, state_counts, worker_id_of

JOBS = 400
KILLS = 5


# serial: three workers and five kills within fixed deadlines; beside the parallel tests it
# timed out waiting for a busy worker (load average 13 on 2 cores)
@pytest.mark.serial
def test_sigkilled_workers_lose_nothing_and_rerun_only_their_own_jobs(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    url = pg_store.url.render_as_string(hide_password=False)
    log = str(tmp_path / "runs.jsonl")
    handles = enqueue_many([Touch(log, i, 0.05) for i in range(JOBS)], retries=3)
    key_of = {h.id: i for i, h in enumerate(handles)}
    rng = random.Random(4)
    args = ("--max-processes", "2", "--max-pending-per-process", "2")

    live: list[WorkerProcess] = []
    ids: dict[int, str] = {}  # worker pid -> worker id

    def start() -> None:
        worker = spawn(url, *args)
        ids[worker.pid] = worker_id_of(pg_store, worker.pid)
        live.append(worker)

    for _ in range(3):
        start()
    killed: list[WorkerProcess] = []
    for k in range(KILLS):
        # Kill a random worker at random points spread over the run (while jobs remain).
        target = int(JOBS * (0.1 + 0.14 * k)) + rng.randint(0, 20)
        wait_for(
            lambda t=target: len(runs(log)) >= t,
            timeout=60,
            what="more runs",
            detail=lambda: f"{state_counts(pg_store)}\n{spawn.logs()}",
        )

        # The victim is a worker that is running jobs (its children have come up). On a slow
        # machine the survivors may run every job left while the replacements still start:
        # then there is nothing left to interrupt, and the kills stop there.
        def busy_or_done() -> list[WorkerProcess] | bool:
            busy = [w for w in live if any(r["worker"] == w.pid for r in runs(log))]
            return busy or state_counts(pg_store)["succeeded"] == JOBS

        busy = wait_for(busy_or_done, timeout=60, what="a busy worker to kill")
        if busy is True:
            break
        assert isinstance(busy, list)
        victim = rng.choice(busy)
        orphans = victim.children()
        victim.kill()
        live.remove(victim)
        killed.append(victim)
        # Its children die with it (no orphan finishing a job that will be rescued).
        wait_for(lambda o=orphans: not any(map(alive, o)), timeout=10, what="orphans to die")
        start()

    wait_for(
        lambda: state_counts(pg_store)["succeeded"] == JOBS,
        timeout=120,
        what=f"all {JOBS} jobs to succeed",
        detail=lambda: f"{state_counts(pg_store)}\n{spawn.logs()}",
    )
    assert state_counts(pg_store) == {"succeeded": JOBS}

    killed_pids = {w.pid for w in killed}
    killed_ids = {ids[pid] for pid in killed_pids}
    attempts = attempts_by_job(pg_store)
    runs_by_key: defaultdict[int, list[dict[str, object]]] = defaultdict(list)
    for r in runs(log):
        runs_by_key[int(r["key"])].append(r)  # type: ignore[call-overload]

    rescued = 0
    for job_id, key in key_of.items():
        rows = attempts[job_id]
        outcomes = Counter(a.outcome for a in rows)
        assert outcomes["succeeded"] == 1, rows  # the result was recorded exactly once
        assert set(outcomes) <= {"succeeded", "lost"}, rows
        lost = [a for a in rows if a.outcome == "lost"]
        assert {a.worker_id for a in lost} <= killed_ids, lost  # no live worker's job rescued
        rescued += len(lost)
        job_runs = runs_by_key[key]
        assert job_runs, f"job {job_id} succeeded without running"
        by_survivors = [r for r in job_runs if r["worker"] not in killed_pids]
        assert len(by_survivors) <= 1, job_runs
        if len(job_runs) > 1:
            # Run again only because it was running on a killed worker.
            assert lost, (job_runs, rows)
            assert len(job_runs) <= 1 + len(lost)
    reran = sum(1 for key in key_of.values() if len(runs_by_key[key]) > 1)
    print(f"{JOBS} jobs, {KILLS} workers killed, {rescued} attempts rescued, {reran} jobs rerun")
    assert rescued >= 1  # the kills did hit running jobs
    for worker in live:
        assert worker.returncode is None
