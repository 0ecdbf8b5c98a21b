"""corequeue's pytest plugin (registered through the ``pytest11`` entry point).

Installing corequeue is enough for an application's tests to use these fixtures:

- ``run_jobs_inline``: enqueued jobs run at once, in-process, after a real JSON round trip of
  their parameters, through the configured middleware (:mod:`corequeue.testing.inline`).
- ``enqueued_jobs``: what the test enqueued and is still waiting, with ``assert_enqueued``,
  ``refute_enqueued``, ``all`` and ``expect`` (:mod:`corequeue.testing.capture`).
- ``corequeue_database_url`` / ``corequeue_store``: a real, empty, migrated corequeue schema
  per test, on PostgreSQL by default (``--corequeue-db=sqlite`` or
  ``@pytest.mark.corequeue_db("sqlite")`` for SQLite) (:mod:`corequeue.testing.postgres`).
- ``corequeue_worker``: a real worker on that database; ``drain()`` runs until nothing is
  ready, ``drain(until=...)`` travels in time (:mod:`corequeue.testing.drain`).
- ``corequeue_app_setup``: nothing by default; an application overrides it in its
  ``conftest.py`` to put its own tables on the test database and point its engine there, and
  returns (or yields) the environment variables the worker's children need to find it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

from corequeue.testing.capture import EnqueuedJobs
from corequeue.testing.drain import TestWorker, test_settings
from corequeue.testing.inline import InlineJobs
from corequeue.testing.postgres import ENV_URL, PostgresNotFound, PostgresServer, find_postgres

ENGINES = ("postgresql", "sqlite")
_SERVER_KEY = pytest.StashKey[PostgresServer | str]()
_DATABASE_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("corequeue", "corequeue job queue fixtures")
    group.addoption(
        "--corequeue-db",
        choices=ENGINES,
        default=None,
        help="database for the corequeue_store fixture: postgresql (default) or sqlite",
    )
    group.addoption(
        "--corequeue-postgres-url",
        default=None,
        help=f"PostgreSQL server for corequeue_store (a user that may CREATE DATABASE); "
        f"default: ${ENV_URL}, then a server answering at 127.0.0.1:5432, then "
        "testcontainers, then a throwaway cluster from local initdb/pg_ctl",
    )
    parser.addini(
        "corequeue_db", "default database for corequeue_store: postgresql or sqlite", default=""
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        'corequeue_db(engine): run this test\'s corequeue_store on "postgresql" or "sqlite"',
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_SERVER_KEY, None)
    if isinstance(server, PostgresServer):
        database = config.stash.get(_DATABASE_KEY, None)
        if database is not None:
            try:
                server.drop_database(database)
            finally:
                server.close()
        else:
            server.close()


def _engine(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("corequeue_db")
    if marker is not None:
        engine = marker.args[0] if marker.args else marker.kwargs.get("engine", "")
        if engine not in ENGINES:
            raise pytest.UsageError(
                f"@pytest.mark.corequeue_db({engine!r}): use one of {', '.join(ENGINES)}"
            )
        return str(engine)
    option = request.config.getoption("corequeue_db")
    if option:
        return str(option)
    ini = str(request.config.getini("corequeue_db") or "")
    if ini:
        if ini not in ENGINES:
            raise pytest.UsageError(f"corequeue_db = {ini!r} in the ini file: use one of {ENGINES}")
        return ini
    return "postgresql"


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI is set: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


def _postgres_database(config: pytest.Config) -> str:
    """One database for the whole session, on the first server found (see postgres.py)."""
    found = config.stash.get(_SERVER_KEY, None)
    if isinstance(found, str):
        _unavailable(found)
    if found is None:
        try:
            found = find_postgres(config.getoption("corequeue_postgres_url"))
        except PostgresNotFound as exc:
            config.stash[_SERVER_KEY] = str(exc)
            _unavailable(str(exc))
        assert isinstance(found, PostgresServer)
        config.stash[_SERVER_KEY] = found
    database = config.stash.get(_DATABASE_KEY, None)
    if database is None:
        database = found.create_database()
        config.stash[_DATABASE_KEY] = database
    return database


def _empty(url: str) -> None:
    """Migrate, then delete every job, attempt, worker and schedule: each test starts empty."""
    from corequeue.store.queries import Store

    store = Store.from_url(url)
    try:
        store.migrate()
        store.truncate_all()
    finally:
        store.dispose()


@pytest.fixture
def corequeue_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a real, empty, migrated corequeue schema for this test.

    PostgreSQL by default (one database per test session, emptied before each test);
    SQLite (a fresh file) with ``--corequeue-db=sqlite``, ``corequeue_db = sqlite`` in the ini
    file, or ``@pytest.mark.corequeue_db("sqlite")``. Skips when no PostgreSQL can be found,
    saying what to install or set (fails instead when CI is set).
    """
    if _engine(request) == "sqlite":
        from corequeue.store.queries import Store

        url = f"sqlite:///{tmp_path / 'corequeue.sqlite3'}"
        store = Store.from_url(url)
        try:
            store.migrate()
        finally:
            store.dispose()
        return url
    url = _postgres_database(request.config)
    _empty(url)
    return url


@pytest.fixture
def corequeue_app_setup(corequeue_database_url: str) -> Mapping[str, str] | None:
    """Override this fixture in your ``conftest.py`` to put your application's tables on the
    test database and point your application's engine at ``corequeue_database_url``.

    Return (or yield) the environment variables the worker's child processes need to find
    that database (for example ``{"MYAPP_DATABASE_URL": corequeue_database_url}``): the
    ``corequeue_worker`` fixture sets them while it drains. ``corequeue_store`` and
    ``corequeue_worker`` depend on it; so should your own database fixtures. Default: nothing.
    """
    return None


@pytest.fixture
def corequeue_store(
    corequeue_database_url: str, corequeue_app_setup: Mapping[str, str] | None
) -> Iterator[Any]:
    """A Store on ``corequeue_database_url``, also configured as corequeue's database for
    the test (``run_in_worker()`` writes there). The previous configuration comes back after.
    The application's tables are there too when it overrides ``corequeue_app_setup``."""
    from corequeue import runtime

    previous = runtime._state.store
    middleware = runtime.configured_middleware()
    store = runtime.configure(corequeue_database_url)
    try:
        yield store
    finally:
        if previous is not None:
            runtime.configure(previous.engine, middleware=middleware)
        else:
            runtime.reset()


@pytest.fixture
def corequeue_worker(
    corequeue_store: Any, corequeue_app_setup: Mapping[str, str] | None
) -> TestWorker:
    """A real worker on the test's database: ``corequeue_worker.drain()`` runs the waiting
    jobs in child processes until nothing is ready (see corequeue.testing.drain). Its
    children get the environment variables ``corequeue_app_setup`` returned."""
    if corequeue_app_setup is not None and not isinstance(corequeue_app_setup, Mapping):
        raise pytest.UsageError(
            f"corequeue_app_setup returned {corequeue_app_setup!r}: return (or yield) None or a "
            "dict of environment variables for the worker's children"
        )
    return TestWorker(
        corequeue_store, test_settings(corequeue_store), env=dict(corequeue_app_setup or {})
    )


def _refuse_both(request: pytest.FixtureRequest, other: str) -> None:
    if other in request.fixturenames:
        raise pytest.UsageError(
            "run_jobs_inline and enqueued_jobs cannot be used in the same test: inline jobs "
            "run at once, so they are never left waiting. Use enqueued_jobs to check what is "
            "enqueued, run_jobs_inline to check what the jobs do."
        )


@pytest.fixture
def run_jobs_inline(request: pytest.FixtureRequest) -> Iterator[InlineJobs]:
    """While active, ``run_in_worker()`` and ``enqueue_many()`` run jobs at once, in-process.

    A job's exception reaches the test; set ``run_jobs_inline.raise_errors = False`` to record
    it instead (``handle.state == "failed"``, ``handle.error``). See corequeue.testing.inline
    for retries, delays and DeferJob.
    """
    _refuse_both(request, "enqueued_jobs")
    inline = InlineJobs()
    with inline:
        yield inline


@pytest.fixture
def enqueued_jobs(request: pytest.FixtureRequest) -> Iterator[EnqueuedJobs]:
    """What the test enqueued and is still waiting, with assertions.

    Captures enqueues (nothing is written, nothing runs) unless the test also uses
    ``corequeue_store`` or ``corequeue_worker``: then jobs go to that database and the
    assertions read the jobs still ``requested`` there.
    """
    _refuse_both(request, "run_jobs_inline")
    store = None
    if "corequeue_store" in request.fixturenames:
        store = request.getfixturevalue("corequeue_store")
    jobs = EnqueuedJobs(store)
    with jobs:
        yield jobs
