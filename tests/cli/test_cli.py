"""The ``corequeue`` command: each command in text and ``--json``, errors, configuration.

Commands that only read or change rows run in-process through ``corequeue.cli.main``; what
concerns the process itself (exit codes, stderr, the environment, workers) runs as a real
``python -m corequeue`` subprocess.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import corequeue
from corequeue import runtime
from corequeue.cli import main
from corequeue.core.display import missing_job
from corequeue.store import schema
from corequeue.store.engine import normalize_url
from corequeue.store.queries import Store
from corequeue.store.records import JobFilter
from testing.e2e import WorkerFactory, run_cli
from testing.jobs import Add, Fail, Record

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """``cli("stats", "--json")`` runs ``corequeue stats --json`` in-process: (code, out, err)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        # Each command configures a store of its own: put the test's back afterwards, so
        # handles and the ``store`` fixture keep working on one engine that is closed at the end.
        before = runtime._state.store
        try:
            code = main(list(args))
        finally:
            mine = runtime._state.store
            if before is not None and mine is not before:
                runtime._state.store = before
                if mine is not None:
                    mine.dispose()
        out, err = capsys.readouterr()
        return code, out, err

    try:
        yield run
    finally:
        runtime.reset()


def cli_json(cli: Cli, *args: str) -> Any:
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def drop_tables(database_url: str) -> None:
    store = Store.from_url(database_url)
    schema.metadata.drop_all(store.engine)
    store.dispose()


def assert_one_clear_line(result: Any, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# -- migrate ----------------------------------------------------------------------------------


def test_migrate_creates_the_tables_then_reports_them_up_to_date(
    database_url: str, cli: Cli
) -> None:
    drop_tables(database_url)

    code, out, _ = cli("migrate", "--database-url", database_url)
    assert code == 0
    assert out.startswith("created the corequeue tables (schema version ")

    code, out, _ = cli("migrate", "--database-url", database_url)
    assert code == 0
    assert "are up to date" in out
    version = schema.SCHEMA_VERSION
    assert cli_json(cli, "migrate", "--database-url", database_url) == {
        "before": version,
        "after": version,
    }


def test_a_worker_facing_a_missing_schema_exits_saying_to_run_migrate(
    database_url: str, tmp_path: Path
) -> None:
    drop_tables(database_url)

    result = run_cli(["run", "--database-url", database_url, "--burst"], cwd=tmp_path)

    assert_one_clear_line(result, "do not exist", "run `corequeue migrate`")


# -- enqueue, stats, jobs ---------------------------------------------------------------------


def test_enqueue_by_name_and_alias_then_show(store: Store, database_url: str, cli: Cli) -> None:
    url = ("--database-url", database_url)
    code, out, _ = cli(
        "enqueue",
        *url,
        "--import",
        "testing.jobs",
        "testing.jobs.Add",
        "--args",
        "[2, 3]",
        "--priority",
        "7",
        "--queue",
        "maths",
    )
    assert code == 0
    assert out.startswith("enqueued job ") and "(testing.jobs.Add)" in out
    by_alias = cli_json(cli, "enqueue", *url, "record", "--kwargs", '{"path": "p", "key": 1}')

    shown = cli_json(cli, "jobs", "show", *url, str(by_alias["id"]))
    assert (shown["name"], shown["state"], shown["queue"]) == (
        "testing.jobs.Record",
        "requested",
        "default",
    )
    assert shown["params"] == {"path": "p", "key": 1}  # named JSON values (issue 20)
    assert shown["source"] == "corequeue enqueue (command line)"
    assert shown["attempts_detail"] == []
    (added,) = store.job_list(JobFilter(queues=("maths",)))
    assert (added.name, added.priority) == ("testing.jobs.Add", 7)

    code, out, _ = cli("jobs", "show", *url, str(added.id))
    assert code == 0
    assert "name: testing.jobs.Add" in out and "state: requested" in out


def test_enqueue_with_a_uniqueness_policy_says_when_it_deduplicated(
    store: Store, database_url: str, cli: Cli
) -> None:
    base = ("enqueue", "--database-url", database_url, "--import", "testing.jobs")
    add = (*base, "testing.jobs.Add", "--unique-key", "k", "--unique-until", "600s")
    first = cli_json(cli, *add, "--args", "[1, 2]")
    assert first["deduplicated"] is False
    again = cli_json(cli, *add, "--args", "[3, 4]", "--on-conflict", "replace")
    assert again == {"id": first["id"], "deduplicated": True}
    code, out, _ = cli(*add, "--args", "[5, 6]")
    assert (code, out.strip()) == (
        0,
        f"job {first['id']} (testing.jobs.Add) holds its unique key: no job was added",
    )
    code, _, err = cli(*add, "--args", "[5, 6]", "--on-conflict", "raise")
    assert code == 1
    assert f"job {first['id']} (testing.jobs.Add) holds the unique key 'k'" in err
    shown = cli_json(cli, "jobs", "show", "--database-url", database_url, str(first["id"]))
    assert (shown["unique_key"], shown["unique_until"]) == ("k", "10m")
    assert shown["params"] == {"a": 3, "b": 4}
    code, _, err = cli(*add, "--args", "[1, 1]", "--unique-until", "someday")
    assert code == 1 and "unique_until='someday' is not a policy" in err
    assert len(store.job_list()) == 1


def test_enqueue_with_arguments_that_do_not_fit_is_one_clear_error(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    result = run_cli(
        ["enqueue", "--database-url", database_url, "testing.jobs.Add", "--args", "[1]"],
        cwd=tmp_path,
    )
    assert_one_clear_line(result, "do not fit testing.jobs.Add", "missing 1 required")
    assert store.job_list() == []


def test_stats_counts_by_queue_and_state(store: Store, database_url: str, cli: Cli) -> None:
    corequeue.enqueue_many([Add(i, i) for i in range(3)])
    corequeue.enqueue_many([Add(i, i) for i in range(2)], queue="mail")
    cancelled = Add(0, 0).run_in_worker(queue="mail")
    store.job_cancel(cancelled.id, now=datetime.now(UTC))

    data = cli_json(cli, "stats", "--database-url", database_url)

    assert data["queues"]["default"]["requested"] == 3
    assert data["queues"]["mail"] == {
        "requested": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert data["totals"]["requested"] == 5
    assert data["workers"] == []
    code, out, _ = cli("stats", "--database-url", database_url)
    assert code == 0
    header, default, mail, total = out.splitlines()[:4]
    assert header.split() == ["queue", "requested", "running", "succeeded", "failed", "cancelled"]
    assert default.split() == ["default", "3", "0", "0", "0", "0"]
    assert mail.split() == ["mail", "2", "0", "0", "0", "1"]
    assert total.split() == ["TOTAL", "5", "0", "0", "0", "1"]


def test_jobs_list_filters_and_pages_newest_first(
    store: Store, database_url: str, cli: Cli
) -> None:
    url = ("--database-url", database_url)
    handles = corequeue.enqueue_many([Add(i, 0) for i in range(5)])
    other = Record("p", 1).run_in_worker(queue="other")

    listed = cli_json(cli, "jobs", "list", *url)
    assert [j["id"] for j in listed] == [other.id, *reversed([h.id for h in handles])]
    by_queue = cli_json(cli, "jobs", "list", *url, "--queue", "other")
    assert [j["id"] for j in by_queue] == [other.id]
    by_job = cli_json(cli, "jobs", "list", *url, "--job", "record")  # an alias works too
    assert [j["id"] for j in by_job] == [other.id]
    page = cli_json(cli, "jobs", "list", *url, "--limit", "2", "--before-id", str(handles[3].id))
    assert [j["id"] for j in page] == [handles[2].id, handles[1].id]
    assert cli_json(cli, "jobs", "list", *url, "--state", "failed") == []

    code, out, _ = cli("jobs", "list", *url, "--queue", "other")
    assert code == 0
    header, line = out.splitlines()  # a header row, then the job (issue 20)
    assert header.split()[:4] == ["id", "state", "queue", "name"]
    assert line.split()[:4] == [str(other.id), "requested", "other", "testing.jobs.Record"]
    code, out, _ = cli("jobs", "list", *url, "--state", "failed")
    assert out.strip() == "no jobs"


def test_jobs_cancel_retry_and_delete(store: Store, database_url: str, cli: Cli) -> None:
    url = ("--database-url", database_url)
    handle = Add(1, 1).run_in_worker()

    code, out, _ = cli("jobs", "cancel", *url, str(handle.id))
    assert (code, out.strip()) == (0, f"job {handle.id} cancelled")
    assert handle.refresh().state.value == "cancelled"
    code, _, err = cli("jobs", "cancel", *url, str(handle.id))
    assert code == 1
    assert f"job {handle.id} is already cancelled" in err  # in users' terms (issue 20)

    retried = cli_json(cli, "jobs", "retry", *url, str(handle.id))
    assert (retried["id"], retried["state"]) == (handle.id, "requested")
    cancelled = cli_json(cli, "jobs", "cancel", *url, str(handle.id))
    assert cancelled["state"] == "cancelled"

    code, _, err = cli("jobs", "retry", *url, "999999")
    assert (code, err.strip()) == (1, f"corequeue: error: {missing_job(999999)}")

    assert cli_json(cli, "jobs", "delete", *url, str(handle.id)) == {"deleted": handle.id}
    assert store.job_get(handle.id) is None
    code, _, err = cli("jobs", "delete", *url, str(handle.id))
    assert (code, err.strip()) == (1, f"corequeue: error: {missing_job(handle.id)}")


def test_jobs_show_after_a_worker_ran_them(
    store: Store, database_url: str, cli: Cli, workers: WorkerFactory, tmp_path: Path
) -> None:
    url = ("--database-url", database_url)
    added = Add(20, 22).run_in_worker()
    failed = Fail(str(tmp_path / "runs.jsonl"), "x").run_in_worker(retries=1)
    assert workers(database_url, "--burst").wait_exit() == 0

    shown = cli_json(cli, "jobs", "show", *url, str(added.id))
    assert (shown["state"], shown["result"]) == ("succeeded", 42)  # a JSON value (issue 20)
    assert [a["outcome"] for a in shown["attempts_detail"]] == ["succeeded"]
    code, out, _ = cli("jobs", "show", *url, str(failed.id))
    assert code == 0
    assert "state: failed" in out
    assert "attempt 1: errored" in out and "attempt 2: errored" in out
    assert 'raise RuntimeError(f"boom {self.key}")' in out
    code, out, _ = cli("jobs", "show", *url, str(added.id))
    assert "result (decoded): 42" in out


def test_prune_deletes_finished_jobs_older_than_given(
    store: Store, database_url: str, cli: Cli, workers: WorkerFactory
) -> None:
    url = ("--database-url", database_url)
    finished = corequeue.enqueue_many([Add(i, i) for i in range(4)])
    assert workers(database_url, "--burst").wait_exit() == 0
    waiting = Add(0, 0).run_in_worker()

    assert cli_json(cli, "prune", *url, "--older-than", "1h") == {"deleted": 0}
    assert cli_json(cli, "prune", *url) == {"deleted": 0}  # the default retention: 7 days
    code, out, _ = cli("prune", *url, "--older-than", "0s")
    assert (code, out.strip()) == (0, "deleted 4 finished job(s) older than 0s")
    assert all(store.job_get(h.id) is None for h in finished)
    assert waiting.refresh().state.value == "requested"


# -- errors -------------------------------------------------------------------------------


def test_a_bad_url_is_one_clear_error(tmp_path: Path) -> None:
    result = run_cli(["stats", "--database-url", "nosuchdb://x"], cwd=tmp_path)
    assert_one_clear_line(result, "unsupported database 'nosuchdb'")


def test_an_unknown_option_is_one_clear_error(tmp_path: Path) -> None:
    result = run_cli(["run", "--no-such-option"], cwd=tmp_path)
    assert result.returncode == 2
    assert_one_clear_line(result, "unrecognized arguments: --no-such-option")


def test_an_unimportable_import_is_one_clear_error(database_url: str, tmp_path: Path) -> None:
    missing = run_cli(
        ["run", "--database-url", database_url, "--import", "no_such_module_xyz"], cwd=tmp_path
    )
    assert_one_clear_line(missing, "cannot import module 'no_such_module_xyz'")

    (tmp_path / "broken_jobs.py").write_text("raise RuntimeError('half-deployed')\n")
    broken = run_cli(
        ["run", "--database-url", database_url, "--import", "broken_jobs"], cwd=tmp_path
    )
    assert_one_clear_line(broken, "cannot import module 'broken_jobs'", "half-deployed")


def test_a_bad_middleware_path_is_one_clear_error(database_url: str, tmp_path: Path) -> None:
    result = run_cli(
        ["run", "--database-url", database_url, "--import", "testing.jobs", "--burst"],
        cwd=tmp_path,
        env={"COREQUEUE_MIDDLEWARE": "testing.jobs.NoSuchMiddleware"},
    )
    assert_one_clear_line(result, "module 'testing.jobs' has no attribute 'NoSuchMiddleware'")


def test_an_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        ["stats", "--database-url", "postgresql://nobody@127.0.0.1:1/nothing"], cwd=tmp_path
    )
    assert_one_clear_line(result, "database unavailable")


# -- configuration ----------------------------------------------------------------------------


def test_configuration_precedence_file_then_environment_then_flag(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.corequeue]\ndatabase_url = "sqlite:///from-file.sqlite3"\n'
    )
    env = {"COREQUEUE_DATABASE_URL": "sqlite:///from-env.sqlite3"}

    from_file = run_cli(["migrate"], cwd=tmp_path)
    from_env = run_cli(["migrate"], cwd=tmp_path, env=env)
    from_flag = run_cli(["migrate", "--database-url", database_url], cwd=tmp_path, env=env)

    assert from_file.returncode == from_env.returncode == from_flag.returncode == 0
    assert "in sqlite:///from-file.sqlite3" in from_file.stdout
    assert "in sqlite:///from-env.sqlite3" in from_env.stdout
    flag_url = normalize_url(database_url).render_as_string(hide_password=True)
    assert f"in {flag_url} are up to date" in from_flag.stdout
    assert (tmp_path / "from-file.sqlite3").exists() and (tmp_path / "from-env.sqlite3").exists()


def test_the_default_database_is_sqlite_in_the_current_directory(tmp_path: Path) -> None:
    result = run_cli(["migrate"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "in sqlite:///corequeue.sqlite3" in result.stdout
    assert (tmp_path / "corequeue.sqlite3").exists()


def test_every_command_has_help(tmp_path: Path) -> None:
    for command in (["run"], ["enqueue"], ["stats"], ["jobs", "list"], ["prune"], ["migrate"]):
        result = run_cli([*command, "--help"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: corequeue " + " ".join(command))
