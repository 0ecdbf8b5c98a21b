"""corequeue_database_url / corequeue_store: a real, empty schema per test, on either engine."""

from __future__ import annotations

import pytest

from corequeue.testing import postgres

ISOLATION_TESTS = """
import pytest
import corequeue
from appjobs import Add

@pytest.mark.parametrize("n", range(3))
def test_each_test_starts_empty(corequeue_store, n):
    assert corequeue.get_store() is corequeue_store
    assert corequeue_store.job_list() == []
    for _ in range(n + 1):
        Add(1, n).run_in_worker()
    assert len(corequeue_store.job_list()) == n + 1
    print("ENGINE", corequeue_store.dialect)

@pytest.mark.corequeue_db("sqlite")
def test_marker_asks_for_sqlite(corequeue_database_url):
    assert corequeue_database_url.startswith("sqlite:///")
"""


def test_postgresql_by_default_each_test_isolated(
    app_dir: pytest.Pytester, with_postgres: str
) -> None:
    app_dir.makepyfile(test_isolation=ISOLATION_TESTS)
    result = app_dir.runpytest_subprocess("-s", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    assert result.stdout.str().count("ENGINE postgresql") == 3


def test_sqlite_by_option_or_ini(app_dir: pytest.Pytester) -> None:
    app_dir.makepyfile(test_isolation=ISOLATION_TESTS)
    result = app_dir.runpytest_subprocess("-s", "--corequeue-db=sqlite")
    result.assert_outcomes(passed=4)
    assert result.stdout.str().count("ENGINE sqlite") == 3
    app_dir.makeini("[pytest]\naddopts = -p no:cacheprovider\ncorequeue_db = sqlite\n")
    result = app_dir.runpytest_subprocess("-s")
    result.assert_outcomes(passed=4)
    assert result.stdout.str().count("ENGINE sqlite") == 3


WHERE_TESTS = """
import os
import pytest

@pytest.mark.parametrize("n", range(8))
def test_where(corequeue_store, n):
    assert corequeue_store.job_list() == []
    with open(os.environ["WHERE_LOG"], "a") as log:
        database = corequeue_store.url.database
        print(os.environ["PYTEST_XDIST_WORKER"], database, file=log)
"""


def test_each_xdist_worker_has_a_postgresql_database_of_its_own(
    app_dir: pytest.Pytester, with_postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_dir.makepyfile(test_where=WHERE_TESTS)
    log = app_dir.path / "where.log"
    monkeypatch.setenv("WHERE_LOG", str(log))
    result = app_dir.runpytest_subprocess("-n", "2", "--dist", "load")
    result.assert_outcomes(passed=8)
    seen = {tuple(line.split()) for line in log.read_text().splitlines()}
    databases = {worker: database for worker, database in seen}
    assert sorted(databases) == ["gw0", "gw1"]  # both workers ran tests,
    assert len(seen) == 2  # each in one database,
    assert len(set(databases.values())) == 2  # not the other's


def test_a_bad_marker_says_what_to_use(app_dir: pytest.Pytester) -> None:
    app_dir.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.corequeue_db("mysql")
        def test_it(corequeue_store):
            pass
        """
    )
    result = app_dir.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*corequeue_db('mysql'): use one of postgresql, sqlite*"])


UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nothing"


def test_unreachable_postgres_skips_with_what_to_do(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    app_dir.makepyfile(test_pg="def test_it(corequeue_store):\n    pass\n")
    result = app_dir.runpytest_subprocess("-rs", f"--corequeue-postgres-url={UNREACHABLE}")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED*PostgreSQL is not reachable at postgresql*://postgres@127.0.0.1:1/nothing"
            "*start it, or fix --corequeue-postgres-url / COREQUEUE_TEST_DATABASE_URL*"
        ]
    )


def test_under_ci_an_unreachable_postgres_fails(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("COREQUEUE_TEST_DATABASE_URL", UNREACHABLE)
    app_dir.makepyfile(test_pg="def test_it(corequeue_store):\n    pass\n")
    result = app_dir.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*PostgreSQL is not reachable*CI is set: failing instead*"])


def test_without_any_postgres_the_reason_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COREQUEUE_TEST_DATABASE_URL", raising=False)
    monkeypatch.setattr(postgres, "DEFAULT_LOCAL_URL", "postgresql://postgres@127.0.0.1:1/x")
    monkeypatch.setattr(postgres, "find_binaries", lambda: None)
    monkeypatch.setattr(postgres, "_docker_answers", lambda: False)
    with pytest.raises(postgres.PostgresNotFound) as caught:
        postgres.find_postgres()
    message = str(caught.value)
    assert "no server answered at postgresql://postgres@127.0.0.1:1/x" in message
    assert "no Docker engine answered" in message
    assert "no initdb/pg_ctl found" in message
    assert "set COREQUEUE_TEST_DATABASE_URL=" in message
    assert "apt install postgresql" in message
    assert "--corequeue-db=sqlite" in message


def test_a_throwaway_cluster_from_local_binaries(
    app_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    if postgres.find_binaries() is None:
        pytest.fail("this test needs the PostgreSQL server binaries (initdb, pg_ctl) installed")
    monkeypatch.delenv("COREQUEUE_TEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    app_dir.makeconftest(  # no server at the default local URL either
        """
        import corequeue.testing.postgres as found

        found.DEFAULT_LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:1/postgres"
        """
    )
    app_dir.makepyfile(
        test_pg="""
        import pathlib
        from appjobs import Add

        def test_it(corequeue_worker):
            url = corequeue_worker.store.url
            assert url.port != 5432
            pathlib.Path("port").write_text(str(url.port))
            handle = Add(1, 2).run_in_worker()
            corequeue_worker.drain()
            assert handle.refresh().result == {"sum": 3}
        """
    )
    result = app_dir.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    port = int((app_dir.path / "port").read_text())
    import socket

    with socket.socket() as sock:  # the server is gone
        assert sock.connect_ex(("127.0.0.1", port)) != 0
