"""Bad schedules are reported when the configuration is loaded, naming the schedule, and
``corequeue run`` refuses to start with one line on stderr."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import corequeue
from corequeue.core.errors import ConfigError
from testing.e2e import run_cli
from testing.schedule_jobs import Tick, write_pyproject
from tests.scheduler.conftest import TICK, definitions

BAD: dict[str, tuple[dict[str, Any], str]] = {
    "expression": (
        {"job": "tick", "cron": "61 * * * *", "args": ["x"]},
        "schedule 'bad': invalid cron expression '61 * * * *': the minute field '61' is out of "
        "range (allowed: 0-59)",
    ),
    "zone": (
        {"job": "tick", "cron": "* * * * *", "timezone": "Mars/Olympus", "args": ["x"]},
        "schedule 'bad': unknown time zone 'Mars/Olympus'",
    ),
    "unknown job": (
        {"job": "myapp.jobs.Missing", "cron": "* * * * *"},
        "schedule 'bad': no job is registered as 'myapp.jobs.Missing'",
    ),
    "bad args": (
        {"job": "tick", "cron": "* * * * *", "args": [1, 2, 3]},
        "schedule 'bad': the job's arguments do not fit: Tick.__init__() takes 2 positional "
        "arguments but 4 were given",
    ),
    "bad kwargs": (
        {"job": "tick", "cron": "* * * * *", "kwargs": {"nope": 1}},
        "schedule 'bad': the job's arguments do not fit",
    ),
    "missed policy": (
        {"job": "tick", "cron": "* * * * *", "args": ["x"], "missed": "sometimes"},
        "schedule 'bad': missed must be 'skip' or 'latest', got 'sometimes'",
    ),
    "unknown key": (
        {"job": "tick", "cron": "* * * * *", "args": ["x"], "when": "now"},
        "schedule 'bad' ([tool.corequeue.schedule] in ",
    ),
    "no date": (
        {"job": "tick", "cron": "0 0 30 2 *", "args": ["x"]},
        "schedule 'bad': invalid cron expression '0 0 30 2 *': it matches no date",
    ),
    "hashed": (
        {"job": "tick", "cron": "H * * * *", "args": ["x"]},
        "schedule 'bad': invalid cron expression 'H * * * *'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_schedule_is_a_config_error_naming_it(case: str) -> None:
    table, message = BAD[case]
    with pytest.raises(ConfigError) as raised:
        definitions({"good": {"job": "tick", "cron": "@daily", "args": ["g"]}, "bad": table})
    assert str(raised.value).startswith(message), str(raised.value)


def test_valid_schedules_load_with_every_key() -> None:
    (definition,) = definitions(
        {
            "nightly": {
                "job": "tick",  # an alias: stored by its registry name
                "cron": "@daily",
                "timezone": "Europe/Paris",
                "args": ["n"],
                "kwargs": {},
                "queue": "reports",
                "priority": 3,
                "missed": "latest",
            }
        }
    )
    assert (definition.name, definition.job, definition.queue, definition.priority) == (
        "nightly",
        TICK,
        "reports",
        3,
    )
    assert (definition.cron.expression, definition.cron.timezone, definition.cron.missed) == (
        "@daily",
        "Europe/Paris",
        "latest",
    )


def test_a_python_declaration_is_checked_when_declared() -> None:
    with pytest.raises(ConfigError, match=r"^schedule 'py': invalid cron expression 'bad'"):
        corequeue.schedule("py", job=Tick("a"), cron="bad")
    with pytest.raises(ConfigError, match=r"^schedule 'py': unknown time zone 'Nowhere'"):
        corequeue.schedule("py", job=Tick("a"), cron="* * * * *", timezone="Nowhere")
    with pytest.raises(ConfigError, match=r"^schedule 'py': job must be a Job instance"):
        corequeue.schedule("py", job=Tick, cron="* * * * *")  # type: ignore[arg-type]


def test_the_configuration_wins_over_a_python_declaration_of_the_same_name() -> None:
    corequeue.schedule("same", job=Tick("python"), cron="*/5 * * * *")
    corequeue.schedule("python-only", job=Tick("p"), cron="@hourly")
    loaded = definitions({"same": {"job": "tick", "cron": "@daily", "args": ["toml"]}})
    assert [(d.name, d.cron.expression, d.args) for d in loaded] == [
        ("python-only", "@hourly", ("p",)),
        ("same", "@daily", ("toml",)),
    ]


@pytest.mark.parametrize("case", ["expression", "zone", "unknown job", "bad args"])
def test_the_worker_refuses_to_start_with_a_bad_schedule(tmp_path: Path, case: str) -> None:
    table, message = BAD[case]
    write_pyproject(tmp_path, {"bad": table})
    url = f"sqlite:///{tmp_path / 'cq.sqlite3'}"
    assert run_cli(["migrate", "--database-url", url], cwd=tmp_path).returncode == 0
    done = run_cli(["run", "--database-url", url, "--burst"], cwd=tmp_path, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"corequeue: error: {message}"), lines[0]
    assert "starting" not in done.stdout + done.stderr


def test_the_worker_refuses_a_bad_python_declaration(tmp_path: Path) -> None:
    (tmp_path / "my_schedules.py").write_text(
        textwrap.dedent(
            """
            import corequeue
            from testing.schedule_jobs import Tick

            corequeue.schedule("py-bad", job=Tick("x"), cron="* * * * *", timezone="Moon/Base")
            """
        )
    )
    url = f"sqlite:///{tmp_path / 'cq.sqlite3'}"
    assert run_cli(["migrate", "--database-url", url], cwd=tmp_path).returncode == 0
    done = run_cli(
        ["run", "--database-url", url, "--import", "my_schedules", "--burst"], cwd=tmp_path
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("corequeue: error: "), lines[0]
    assert "schedule 'py-bad': unknown time zone 'Moon/Base'" in lines[0]
