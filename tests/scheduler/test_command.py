"""``corequeue schedules`` and ``--json``: name, cron, zone, next run, last run, last outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from corequeue.core import cron
from corequeue.scheduler import Scheduler
from corequeue.store.queries import Store
from testing.e2e import run_cli
from testing.faults import wait_for
from testing.schedule_jobs import write_pyproject
from tests.scheduler.conftest import definitions, stored

CONFIG = {
    "every-minute": {"job": "tick", "cron": "* * * * *", "args": ["m"]},
    "paris-9am": {
        "job": "tick",
        "cron": "0 9 * * *",
        "timezone": "Europe/Paris",
        "args": ["p"],
        "missed": "latest",
    },
}


def test_schedules_lists_expression_zone_next_and_last_runs(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    write_pyproject(tmp_path, CONFIG)
    # The worker below ticks its scheduler too: were it to run across a minute's start, it
    # would fire "every-minute" itself (a second job). Start well inside a minute.
    wait_for(lambda: datetime.now(UTC).second < 40, timeout=30, what="a minute's first 40 s")
    # An occurrence fired ten minutes ago, then run by a worker.
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    scheduler = Scheduler(store, definitions(CONFIG))
    scheduler.run_once(t0 + timedelta(seconds=1))
    scheduler.run_once(t0 + timedelta(seconds=61))
    fired = stored(store)["every-minute"]
    assert fired.last_job_id is not None
    done = run_cli(["run", "--database-url", database_url, "--burst"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # A schedule stored by some worker but not in this configuration.
    Scheduler(
        store, definitions({"retired": {"job": "tick", "cron": "@hourly", "args": ["r"]}})
    ).run_once(datetime.now(UTC))

    before = datetime.now(UTC)
    listed = run_cli(["schedules", "--database-url", database_url, "--json"], cwd=tmp_path)
    after = datetime.now(UTC)
    assert listed.returncode == 0, listed.stderr
    data = {item["name"]: item for item in json.loads(listed.stdout)}
    assert sorted(data) == ["every-minute", "paris-9am", "retired"]

    minute = data["every-minute"]
    assert (minute["cron"], minute["timezone"], minute["missed"], minute["configured"]) == (
        "* * * * *",
        "UTC",
        "skip",
        True,
    )
    assert minute["job"] == "testing.schedule_jobs.Tick"
    assert minute["last_job_id"] == fired.last_job_id
    assert minute["last_outcome"] == "succeeded"
    last_run = datetime.fromisoformat(minute["last_run"])  # when that job started
    assert t0 < last_run <= after
    next_run = datetime.fromisoformat(minute["next_run"])
    assert before < next_run <= after + timedelta(minutes=1)
    assert next_run.second == 0 and next_run.microsecond == 0

    paris = data["paris-9am"]
    assert (paris["cron"], paris["timezone"], paris["missed"]) == (
        "0 9 * * *",
        "Europe/Paris",
        "latest",
    )
    (paris_schedule,) = [d.cron for d in definitions(CONFIG) if d.name == "paris-9am"]
    assert datetime.fromisoformat(paris["next_run"]) in {
        cron.next_occurrence(paris_schedule, before),
        cron.next_occurrence(paris_schedule, after),
    }
    assert datetime.fromisoformat(paris["next_run"]).astimezone(ZoneInfo("Europe/Paris")).hour == 9
    assert (paris["last_run"], paris["last_outcome"], paris["last_job_id"]) == (None, None, None)

    retired = data["retired"]
    assert retired["configured"] is False
    assert (retired["cron"], retired["next_run"], retired["last_run"]) == ("@hourly", None, None)

    text = run_cli(["schedules", "--database-url", database_url], cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    header, *lines = text.stdout.strip().splitlines()
    for title in ("name", "cron", "zone", "next run (UTC)", "last run (UTC)", "outcome"):
        assert title in header
    rows = {line.split()[0]: line for line in lines}
    assert sorted(rows) == ["every-minute", "paris-9am", "retired"]
    assert "* * * * *" in rows["every-minute"] and "UTC" in rows["every-minute"]
    assert rows["every-minute"].rstrip().endswith("succeeded")
    # (A separate run of the command: a minute may have turned since the --json one.)
    next_cell = rows["every-minute"].split()[7]
    assert next_cell in {(next_run + timedelta(minutes=k)).isoformat()[:19] for k in (0, 1)}, rows[
        "every-minute"
    ]
    assert minute["last_run"][:19] in rows["every-minute"]
    assert "Europe/Paris" in rows["paris-9am"] and paris["next_run"][:19] in rows["paris-9am"]
    assert rows["paris-9am"].rstrip().endswith("-")
    assert rows["retired"].rstrip().endswith("(no longer configured)")


def test_schedules_with_none(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cq.sqlite3'}"
    assert run_cli(["migrate", "--database-url", url], cwd=tmp_path).returncode == 0
    text = run_cli(["schedules", "--database-url", url], cwd=tmp_path)
    assert (text.returncode, text.stdout.strip()) == (0, "no schedules")
    as_json = run_cli(["schedules", "--database-url", url, "--json"], cwd=tmp_path)
    assert json.loads(as_json.stdout) == []
