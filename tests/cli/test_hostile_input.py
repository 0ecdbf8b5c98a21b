"""Hostile input on the command line (issue 18, items 10, 13, 15): usage errors are one line
and exit 2, values the database cannot take are refused before it sees them, a closed pipe
ends the command quietly, and control characters from jobs are escaped on the terminal and in
log lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa

from corequeue import enqueue_many, runtime
from corequeue.cli import main
from corequeue.core.states import JobState, Outcome
from corequeue.logs import LineFormatter
from corequeue.store import schema
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd
from corequeue.worker.counters import Counters
from corequeue.worker.joblog import log_ends
from testing.e2e import run_cli
from testing.jobs import Add

LIMIT = ("--limit", "2000")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """(exit code, stdout, stderr) of ``corequeue ARGS`` run in-process; argparse's exits too."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        before = runtime._state.store
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
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


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["enqueue", "x", "--delay", "nan"], "argument --delay: 'nan' is not a finite number"),
        (["enqueue", "x", "--delay=-inf"], "argument --delay: '-inf' is not a finite number"),
        (["enqueue", "x", "--timeout", "inf"], "argument --timeout: 'inf' is not a finite number"),
        (
            ["enqueue", "x", "--priority", "99999999999999999999"],
            "argument --priority: 99999999999999999999 is not between -2147483648 and 2147483647",
        ),
        (["enqueue", "x", "--retries", "-1"], "argument --retries: -1 is not between 0 and"),
        (["jobs", "list", "--limit=-5"], "argument --limit: -5 is not between 1 and 100000"),
        (["jobs", "list", "--before-id", "x"], "argument --before-id: 'x' is not an integer"),
        (
            ["jobs", "show", "99999999999999999999"],
            "argument id: 99999999999999999999 is not between 1 and 9223372036854775807",
        ),
        (["jobs", "cancel", "0"], "argument id: 0 is not between 1 and"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(cli: Any, args: list[str], complaint: str) -> None:
    code, out, err = cli(*args)
    assert (code, out) == (2, "")
    assert err.startswith("corequeue ") and complaint in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_values_the_database_cannot_take_are_refused_in_one_line(
    store: Store, database_url: str, cli: Any
) -> None:
    code, out, err = cli("jobs", "list", "--database-url", database_url, "--search", "²")
    assert (code, out, err) == (0, "no jobs\n", "")
    huge = "9" * 30
    code, out, err = cli("jobs", "list", "--database-url", database_url, "--search", huge)
    assert (code, out, err) == (0, "no jobs\n", "")
    code, out, err = cli("prune", "--database-url", database_url, "--older-than", "99999999999d")
    assert (code, out) == (1, "")
    assert err == (
        "corequeue: error: --older-than = '99999999999d' (command line) must be a finite "
        "duration of at most 100 years\n"
    )


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b"[tool.corequeue]\nqueues = ['\xff']\n", "is not UTF-8 text"),
        (b"[tool]\ncorequeue = 5\n", "must be a table of settings"),
    ],
)
def test_a_bad_configuration_file_is_one_line(
    tmp_path: Path, cli: Any, content: bytes, complaint: str
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(content)
    code, out, err = cli("stats", "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith("corequeue: error: ") and complaint in err
    assert err.count("\n") == 1


def test_max_processes_above_4_per_cpu_needs_force(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-opened.sqlite3'}"
    result = run_cli(["run", "--database-url", url, "--max-processes", "100000"])
    cpus = os.cpu_count() or 1
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"corequeue: error: max_processes = 100000 is more than 4 per CPU ({cpus} CPUs here, "
        f"so at most {4 * cpus}): lower it, or pass --force to start that many\n"
    )
    assert not (tmp_path / "never-opened.sqlite3").exists()
    floats = run_cli(["run", "--database-url", url, "--max-processes", "1e9"])
    assert floats.returncode == 2 and "argument --max-processes" in floats.stderr


def test_a_closed_pipe_ends_jobs_list_quietly(store: Store, database_url: str) -> None:
    enqueue_many([Add(i, i) for i in range(2000)])  # more than a pipe's buffer of output
    process = subprocess.Popen(
        [sys.executable, "-m", "corequeue", "jobs", "list", "--database-url", database_url, *LIMIT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()  # `| head -1`
    process.stdout.close()
    code = process.wait(timeout=60)
    err = process.stderr.read().decode()
    process.stderr.close()
    assert (code, err) == (141, "")


def test_control_characters_are_escaped_on_the_terminal(
    store: Store, database_url: str, cli: Any
) -> None:
    handle = Add(1, 2).run_in_worker(queue="q\x1b[2J\nfake")
    jobs = schema.jobs
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == handle.id)
            .values(error="Boom: \x1b[31mred\x1b[0m\nline two\r\x07")
        )
    for args in (("jobs", "list"), ("jobs", "show", str(handle.id)), ("stats",)):
        code, out, err = cli(*args, "--database-url", database_url)
        assert code == 0, err
        assert "\x1b" not in out and "\r" not in out and "\x07" not in out
        assert "q\\x1b[2J\\nfake" in out
    code, out, _ = cli("jobs", "list", "--database-url", database_url)
    assert out.count("\n") == 2  # the header row and the job's line
    assert "error=Boom: \\x1b[31mred\\x1b[0m\\nline two\\r\\x07" in out


def test_control_characters_are_escaped_in_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    now = datetime.now(UTC)
    end = AttemptEnd(
        job_id=7,
        lease="l",
        attempt=1,
        outcome=Outcome.ERRORED,
        change=cast(Any, SimpleNamespace(state=JobState.FAILED)),
        worker_id=None,
        started_at=now,
        finished_at=now,
        error_type="ValueError",
        error_message="bad\n2026-01-01 00:00:00,000 INFO corequeue.worker forged \x1b[2J",
        name="jobs.Name\r",
        queue="q\nq",
    )
    with caplog.at_level(logging.INFO, logger="corequeue.worker"):
        log_ends(Counters(), [end], {7})
    (record,) = caplog.records
    line = LineFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line and "\r" not in line
    assert "name=jobs.Name\\r queue=q\\nq" in line
    assert "error=ValueError: bad\\n2026-01-01 00:00:00,000 INFO corequeue.worker forged" in line
    # Any other line through the command line's formatter, too.
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "queues=%s", ("a\nb\x9b",), None)
    assert LineFormatter().format(other).endswith(" INFO x queues=a\\nb\\x9b")
