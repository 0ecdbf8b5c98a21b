"""SQLite: a worker killed with SIGKILL leaves nothing stuck once another worker starts."""

from __future__ import annotations

from pathlib import Path

from corequeue import enqueue_many
from corequeue.store.queries import Store
from testing.faults import alive, wait_for
from testing.reliability_jobs import Crash, Touch, runs
from tests.reliability.conftest import Spawner, attempts_by_job, state_counts


def test_a_sigkilled_sqlite_worker_leaves_nothing_stuck(
    sqlite_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    url = sqlite_store.url.render_as_string(hide_password=False)
    log = str(tmp_path / "runs.jsonl")
    hang = Crash(log, "hang", "hang").run_in_worker(priority=10, retries=1)  # hangs once
    handles = enqueue_many([Touch(log, i, 0.05) for i in range(30)], retries=1)
    first = spawn(url, "--max-processes", "2", "--max-pending-per-process", "3")
    wait_for(lambda: any(r["key"] == "hang" for r in runs(log)), timeout=60, what="hang starts")
    orphans = first.children()
    first.kill()  # in the middle of its work: jobs running, transactions possibly open
    wait_for(lambda: not any(map(alive, orphans)), timeout=10, what="its children to die")
    assert state_counts(sqlite_store)["running"] >= 1

    second = spawn(url, "--max-processes", "2")
    assert hang.wait(timeout=60) == "hang", second.log()
    for handle in handles:
        handle.wait(timeout=60)
    assert state_counts(sqlite_store) == {"succeeded": 31}
    lost = [
        a for rows in attempts_by_job(sqlite_store).values() for a in rows if a.outcome == "lost"
    ]
    assert hang.id in {a.job_id for a in lost}
    assert second.returncode is None
