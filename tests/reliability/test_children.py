"""A child that dies mid-job (SIGKILL, segfault, os._exit) or runs past its timeout: each
attempt is recorded with its cause, the child is replaced and the worker goes on."""

from __future__ import annotations

from pathlib import Path

from corequeue import enqueue_many
from corequeue.store.queries import Store
from testing.faults import alive, wait_for
from testing.reliability_jobs import Crash, Touch, runs
from tests.reliability.conftest import Spawner, attempts_by_job, worker_id_of


def test_crashed_and_timed_out_children_are_recorded_and_replaced(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    # Each crashing job dies on its first run only, so its retry must succeed.
    crashes = {
        how: Crash(log, how, how).run_in_worker(retries=1)
        for how in ("segfault", "sigsegv", "exit3", "hang")
    }
    too_long = Crash(log, "too-long", "hang-always").run_in_worker(timeout=1, retries=0)
    worker = spawn(pg_store.url.render_as_string(hide_password=False), "--max-processes", "2")
    worker_id = worker_id_of(pg_store, worker.pid)

    # The test kills the child running "hang" itself (SIGKILL from outside).
    hang = wait_for(
        lambda: next((r for r in runs(log) if r["key"] == "hang"), None),
        timeout=60,
        what="the 'hang' job to start",
    )
    assert hang["worker"] == worker.pid
    worker.kill_child(hang["pid"])

    for how, handle in crashes.items():
        assert handle.wait(timeout=60) == how, spawn.logs()
    wait_for(lambda: too_long.refresh().state.value == "failed", timeout=30, what="timeout")

    attempts = attempts_by_job(pg_store)
    expected = {
        "segfault": "killed by SIGSEGV",
        "sigsegv": "killed by SIGSEGV",
        "exit3": "exited with code 3",
        "hang": "killed by SIGKILL",
    }
    for how, handle in crashes.items():
        first, second = attempts[handle.id]
        assert (first.outcome, first.error_type) == ("lost", "ChildProcessLost"), first
        assert expected[how] in first.error_message, first.error_message
        assert first.worker_id == worker_id
        assert second.outcome == "succeeded"
        job = pg_store.job_get(handle.id)
        assert job is not None and job.attempts == 2
    (timed_out,) = attempts[too_long.id]
    assert timed_out.outcome == "timed_out"
    assert timed_out.error_message == "the job ran past its timeout of 1s"

    # Four crashes and one timeout: five children replaced, and the worker still works.
    after = enqueue_many([Touch(log, f"after-{i}") for i in range(10)])
    assert [h.wait(timeout=60) for h in after] == [f"after-{i}" for i in range(10)]
    children = worker.wait_children(2)
    assert len(children) == 2 and all(alive(pid) for pid in children)
    wait_for(
        lambda: (
            next(w.stats for w in pg_store.worker_list() if w.id == worker_id)["children_replaced"]
            >= 5
        ),
        timeout=10,
        what="children_replaced >= 5 in the heartbeat stats",
    )
    assert worker.returncode is None
