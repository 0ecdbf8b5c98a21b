"""``corequeue dashboard``: the real command, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from corequeue.cli import build_parser


def dashboard(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COREQUEUE_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "corequeue", "dashboard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        cwd=cwd,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_refuses_to_listen_beyond_localhost_without_a_token(host: str, tmp_path: Path) -> None:
    result = dashboard("--host", host, "--database-url", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode == 2
    assert "refusing to listen on" in result.stderr
    assert "--token" in result.stderr and "COREQUEUE_DASHBOARD_TOKEN" in result.stderr


def test_a_missing_schema_is_a_clear_error(tmp_path: Path) -> None:
    result = dashboard("--database-url", f"sqlite:///{tmp_path / 'empty.sqlite3'}", "--port", "1")
    assert result.returncode == 2
    assert "run `corequeue migrate`" in result.stderr


def test_the_command_is_registered_with_its_options() -> None:
    args = build_parser().parse_args(
        [
            "dashboard",
            "--host",
            "::1",
            "--port",
            "9000",
            "--token",
            "t",
            "--read-only",
            "--database-url",
            "sqlite:///x.sqlite3",
            "--config",
            "pyproject.toml",
        ]
    )
    assert (args.host, args.port, args.token, args.read_only) == ("::1", 9000, "t", True)
    assert (args.database_url, args.config) == ("sqlite:///x.sqlite3", "pyproject.toml")
    assert callable(args.handler)
    defaults = build_parser().parse_args(["dashboard"])
    assert (defaults.host, defaults.port, defaults.token, defaults.read_only) == (
        "127.0.0.1",
        8765,
        None,
        False,
    )
