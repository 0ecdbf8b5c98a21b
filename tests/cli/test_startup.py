"""Start-up: what a worker imports before its first job can run (issue 19).

``import corequeue`` loads its public names on first use; ``corequeue run`` starts the fork
server before it imports the store and SQLAlchemy, so that the two processes' imports run side
by side; the server loads the database driver once for all its children; and neither the
worker nor the server imports what a worker without ORM parameters, schedules or a dashboard
never uses. Each check runs in a fresh interpreter (this one has imported everything).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import corequeue
from corequeue import cli
from corequeue.executor import server

ROOT = Path(__file__).resolve().parents[2]


def fresh(code: str, env: dict[str, str] | None = None) -> object:
    """What ``code`` prints as JSON on its last line, run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def loaded_after(imports: str, modules: list[str]) -> list[str]:
    listing = f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    code = f"import json, sys\n{imports}\n{listing}"
    found = fresh(code)
    assert isinstance(found, list)
    return found


def test_import_corequeue_loads_neither_sqlalchemy_nor_the_driver() -> None:
    assert loaded_after("import corequeue", ["sqlalchemy", "psycopg", "corequeue.store"]) == []


def test_the_command_entry_point_is_light() -> None:
    heavy = ["sqlalchemy", "psycopg", "corequeue.store", "corequeue.command_line"]
    assert loaded_after("import corequeue.cli", heavy) == []


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in corequeue.__all__:
        assert getattr(corequeue, name) is not None, name
    assert set(corequeue.__all__) <= set(dir(corequeue))
    with pytest.raises(AttributeError, match="no attribute 'Jobb'"):
        corequeue.Jobb  # noqa: B018


def test_public_names_resolve_in_a_fresh_interpreter() -> None:
    code = (
        "import json, corequeue\n"
        "from corequeue import Job, configure, schedule, JobState\n"
        "print(json.dumps([n for n in corequeue.__all__ if getattr(corequeue, n) is None]))"
    )
    assert fresh(code) == []


def test_a_worker_and_its_fork_server_skip_the_orm_the_scheduler_and_the_dashboard() -> None:
    # What `corequeue run` imports (its parser and subcommands, the worker, the pool) and what
    # the fork server imports before forking children.
    imports = (
        "import corequeue.command_line, corequeue.worker, corequeue.executor.pool\n"
        "import corequeue.executor.child, corequeue.store.engine"
    )
    unused = ["sqlalchemy.orm", "croniter", "corequeue.web.app", "starlette", "jinja2"]
    assert loaded_after(imports, unused) == []


def test_run_starts_the_fork_server_before_importing_sqlalchemy() -> None:
    code = """
import json, sys
from corequeue.executor import server
def record(imports, database_url=""):
    print(json.dumps([list(imports), database_url, "sqlalchemy" in sys.modules]))
    raise SystemExit(0)
server.start_early = record
from corequeue import cli
cli.main(["--log-level", "DEBUG", "run", "--import", "json", "--max-processes", "2",
          "--database-url", "postgresql://app@db.example/jobs"])
"""
    assert fresh(code) == [["json"], "postgresql://app@db.example/jobs", False]


def test_the_fork_server_loads_the_database_driver() -> None:
    # Imported with the environment the worker gives it; a datagram to no socket is dropped.
    code = (
        "import json, sys\n"
        "import corequeue.executor.forkserver\n"
        "print(json.dumps('psycopg' in sys.modules))"
    )
    env = {server.IMPORTS_ENV: "", server.READY_ENV: "", server.DRIVER_ENV: "postgresql://"}
    assert fresh(code, env) is True
    assert fresh(code, {**env, server.DRIVER_ENV: ""}) is False


def test_the_forecast_reads_the_run_flags(tmp_path: Path) -> None:
    argv = ["run", "--import", "app.jobs", "--import=app.more", "--queue", "mail"]
    argv += ["--database-url", "postgresql://app@db/jobs", "--max-processes", "8"]
    assert cli.run_forecast(argv) == (("app.jobs", "app.more"), "postgresql://app@db/jobs")
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.corequeue]\nimports = ["from.config"]\n')
    forecast = cli.run_forecast(["--log-level=INFO", "run", "--config", str(config)])
    assert forecast == (("from.config",), "sqlite:///corequeue.sqlite3")


def test_the_forecast_puts_django_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COREQUEUE_DJANGO_SETTINGS", raising=False)
    forecast = cli.run_forecast(["run", "--django-settings", "site.settings", "--import", "a"])
    assert forecast is not None
    assert forecast[0] == ("corequeue.contrib.django", "a")
    assert os.environ["COREQUEUE_DJANGO_SETTINGS"] == "site.settings"


@pytest.mark.parametrize(
    "argv",
    [
        ["stats"],  # another command
        ["run", "--help"],
        ["run", "--import"],  # the full parser reports it
        ["run", "--config", "/no/such/pyproject.toml"],  # and this
        [],
    ],
)
def test_no_forecast_where_the_parser_decides(argv: list[str]) -> None:
    assert cli.run_forecast(argv) is None
