"""Finding PostgreSQL (issue 22): the URL setting; else the default local URL when a server
answers there; else testcontainers; else a throwaway cluster; else skip (fail under CI=true)."""

from __future__ import annotations

import pytest

USES_THE_DATABASE = """
def test_the_database(corequeue_database_url):
    print("DATABASE", corequeue_database_url)
    assert corequeue_database_url.startswith("postgresql")
"""

NOTHING_ANSWERS = """
import corequeue.testing.postgres as found

found.DEFAULT_LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:1/postgres"  # nobody there
found.BINARY_DIRS = ()  # and no initdb/pg_ctl to start a cluster with
"""


def test_a_server_at_the_default_local_url_is_used_first(
    app_dir: pytest.Pytester, postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "127.0.0.1:5432" not in postgres_admin_url:
        pytest.fail(
            f"this test needs the project's server at 127.0.0.1:5432, not {postgres_admin_url}"
        )
    monkeypatch.delenv("COREQUEUE_TEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no initdb either: the local server is enough
    app_dir.makepyfile(test_found=USES_THE_DATABASE)
    result = app_dir.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*DATABASE postgresql+psycopg://postgres@127.0.0.1:5432/cq_test_*"]
    )


def test_no_server_anywhere_skips_and_fails_under_ci(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COREQUEUE_TEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")  # no Docker engine answers
    monkeypatch.delenv("CI", raising=False)
    app_dir.makeconftest(NOTHING_ANSWERS)
    app_dir.makepyfile(test_found=USES_THE_DATABASE)
    result = app_dir.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*no PostgreSQL server for corequeue's test fixtures (no server answered at *127.0.0.1:1*"]
    )
    monkeypatch.setenv("CI", "true")
    result = app_dir.runpytest_subprocess()
    result.assert_outcomes(errors=1)  # in the fixture's set-up
    result.stdout.fnmatch_lines(["*(CI is set: failing instead of skipping)*"])
