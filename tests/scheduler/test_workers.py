"""Three real ``corequeue run`` workers share an every-2-seconds schedule, on SQLite and on
PostgreSQL: each occurrence is enqueued exactly once, consecutive and without gaps, and a worker
restarted in the middle repeats and skips nothing.

The restart keeps at least one worker up: with every worker down over an occurrence, ``skip``
would (rightly) skip it.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from corequeue.store.queries import Store
from corequeue.store.schema import jobs
from testing.e2e import ScratchWorker, WorkerFactory, wait_for
from testing.schedule_jobs import write_pyproject

PERIOD = timedelta(seconds=2)
WORKER_ARGS = ("--max-processes", "1", "--poll-interval", "0.5")


def scheduled(url: str) -> list[tuple[datetime, str]]:
    """(run_at, state) of every job the every-2s schedule enqueued, in insertion order."""
    store = Store.from_url(url)
    try:
        with store.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.run_at, jobs.c.state)
                .where(jobs.c.source == "schedule every-2s")
                .order_by(jobs.c.id)
            ).all()
        return [(r.run_at, str(r.state)) for r in rows]
    finally:
        store.dispose()


def wait_for_jobs(url: str, count: int, *, what: str) -> list[tuple[datetime, str]]:
    """Wait until ``count`` jobs were enqueued and all but the newest two ran."""

    def enough() -> list[tuple[datetime, str]] | None:
        found = scheduled(url)
        if len(found) >= count and all(s == "succeeded" for _, s in found[:-2]):
            return found
        return None

    result: list[tuple[datetime, str]] = wait_for(enough, timeout=180, what=what)
    return result


def check_once_each(url: str, logs: list[ScratchWorker], at_least: int) -> list[datetime]:
    found = scheduled(url)
    run_ats = [r for r, _ in found]
    assert len(run_ats) >= at_least, run_ats
    assert len(set(run_ats)) == len(run_ats), f"an occurrence was enqueued twice: {run_ats}"
    assert run_ats == sorted(run_ats)
    gaps = [b - a for a, b in itertools.pairwise(run_ats)]
    assert all(gap == PERIOD for gap in gaps), f"not consecutive occurrences: {run_ats}"
    assert all(r.second % 2 == 0 and r.microsecond == 0 for r in run_ats)
    assert all(state in ("succeeded", "requested", "running") for _, state in found)
    assert all(state == "succeeded" for _, state in found[:-2])
    # The workers' logs agree: one "fired" line per job, whichever worker fired it.
    text = "".join(w.log() for w in logs)
    assert text.count("schedule every-2s fired occurrence") == len(run_ats)
    assert "Traceback" not in text and "failed; it will run again" not in text, text[-4000:]
    return run_ats


def test_three_workers_fire_each_occurrence_once(
    database_url: str, tmp_path: Path, workers: WorkerFactory
) -> None:
    write_pyproject(
        tmp_path, {"every-2s": {"job": "tick", "cron": "* * * * * */2", "args": ["toml"]}}
    )  # the workers' working directory: they read it
    fleet = [
        workers(database_url, *WORKER_ARGS, imports=("testing.schedule_jobs",)) for _ in range(3)
    ]
    for worker in fleet:
        worker.wait_log("starting", timeout=120)
    wait_for_jobs(database_url, 6, what="6 occurrences of every-2s")  # ~12 s of the schedule
    assert [w.stop() for w in fleet] == [0, 0, 0]
    check_once_each(database_url, fleet, at_least=6)


def test_a_worker_restart_repeats_and_skips_nothing(
    database_url: str, tmp_path: Path, workers: WorkerFactory
) -> None:
    imports = ("tests.scheduler.python_schedules",)  # declared with corequeue.schedule()
    fleet = [workers(database_url, *WORKER_ARGS, imports=imports) for _ in range(3)]
    for worker in fleet:
        worker.wait_log("starting", timeout=120)
    before = len(wait_for_jobs(database_url, 3, what="3 occurrences before the restart"))
    assert fleet[0].stop() == 0  # SIGTERM: a deploy restarts this worker
    stopped = len(wait_for_jobs(database_url, before + 1, what="an occurrence while it is down"))
    replacement = workers(database_url, *WORKER_ARGS, imports=imports)
    replacement.wait_log("starting", timeout=120)
    wait_for_jobs(database_url, stopped + 3, what="3 occurrences after the restart")
    assert [w.stop() for w in (*fleet[1:], replacement)] == [0, 0, 0]
    check_once_each(database_url, [*fleet, replacement], at_least=stopped + 3)
