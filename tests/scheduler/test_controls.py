"""Schedule controls (issue 23): a paused schedule fires nothing and, on resume, follows its
``missed`` policy; ``run NAME`` enqueues one occurrence now, marked manual; the commands."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from corequeue.scheduler import Scheduler, run_now
from corequeue.store.queries import Store
from corequeue.store.schedules import schedule_pause
from corequeue.store.schema import jobs
from testing.e2e import run_cli
from testing.schedule_jobs import write_pyproject
from tests.scheduler.conftest import at, definitions, enqueued, every_minute, minute, run, stored


@pytest.mark.parametrize(
    ("missed", "after_resume"),
    [
        ("skip", [minute(10, 6)]),  # what the pause missed is skipped: the next occurrence
        ("latest", [minute(10, 5), minute(10, 6)]),  # the latest missed one, then on
    ],
)
def test_a_paused_schedule_fires_nothing_and_its_missed_policy_decides_on_resume(
    store: Store, missed: str, after_resume: list[datetime]
) -> None:
    scheduler = Scheduler(store, definitions({"m": every_minute(missed=missed)}))
    run([scheduler], at(10, 0, 30), at(10, 1, 30))
    assert enqueued(store, "m") == [minute(10, 1)]
    assert schedule_pause(store, "m")
    assert stored(store)["m"].paused
    run([scheduler], at(10, 1, 40), at(10, 5, 30))
    assert enqueued(store, "m") == [minute(10, 1)]  # nothing while paused
    assert schedule_pause(store, "m", paused=False)
    run([scheduler], at(10, 5, 40), at(10, 6, 30))
    assert enqueued(store, "m") == [minute(10, 1), *after_resume]


def test_pausing_an_unknown_schedule_says_so(store: Store) -> None:
    assert not schedule_pause(store, "nope")


def test_run_now_enqueues_one_occurrence_marked_manual(store: Store) -> None:
    scheduler = Scheduler(store, definitions({"m": every_minute()}))
    run([scheduler], at(10, 0, 30), at(10, 1, 30))
    before = stored(store)["m"]
    (definition,) = definitions({"m": every_minute()})
    job_id = run_now(store, definition, now=at(10, 1, 40))
    job = store.job_get(job_id)
    assert job is not None and job.source == "schedule m (manual)"
    assert job.run_at == at(10, 1, 40)
    after = stored(store)["m"]
    assert after.last_occurrence == before.last_occurrence  # the rhythm is untouched
    run([scheduler], at(10, 1, 50), at(10, 2, 10))
    assert enqueued(store, "m") == [minute(10, 1), minute(10, 2)]


def test_the_schedules_commands(store: Store, database_url: str, tmp_path: Path) -> None:
    write_pyproject(tmp_path, {"m": every_minute()})
    Scheduler(store, definitions({"m": every_minute()})).run_once(at(10, 0, 30))
    base = ["--database-url", database_url]
    paused = run_cli(["schedules", "pause", "m", *base], cwd=tmp_path)
    assert paused.returncode == 0, paused.stderr
    assert "schedule m: paused" in paused.stdout
    listed = run_cli(["schedules", *base, "--json"], cwd=tmp_path)
    assert [(s["name"], s["paused"]) for s in json.loads(listed.stdout)] == [("m", True)]
    assert "(paused)" in run_cli(["schedules", *base], cwd=tmp_path).stdout
    resumed = run_cli(["schedules", "resume", "m", *base], cwd=tmp_path)
    assert resumed.returncode == 0 and not stored(store)["m"].paused
    ran = run_cli(["schedules", "run", "m", *base, "--json"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    job_id = json.loads(ran.stdout)["job_id"]
    with store.engine.connect() as conn:
        source = conn.execute(sa.select(jobs.c.source).where(jobs.c.id == job_id)).scalar_one()
    assert source == "schedule m (manual)"
    unknown = run_cli(["schedules", "pause", "nope", *base], cwd=tmp_path)
    assert unknown.returncode != 0 and "no stored schedule 'nope'" in unknown.stderr
    missing = run_cli(["schedules", "run", *base], cwd=tmp_path)
    assert missing.returncode != 0 and "needs a schedule name" in missing.stderr
