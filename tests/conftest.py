"""Shared fixtures: every store-level test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from COREQUEUE_TEST_DATABASE_URL (default: the local server at
postgresql://postgres@127.0.0.1:5432/test). Each test session works in a database of its own,
created on that server and dropped at the end; each test starts from empty tables. Under CI
(CI=true) an unreachable PostgreSQL fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import corequeue
from corequeue import runtime
from corequeue.store import schema
from corequeue.store.engine import normalize_url
from corequeue.store.queries import Store

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_url() -> str:
    return os.environ.get("COREQUEUE_TEST_DATABASE_URL", DEFAULT_PG)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session."""
    admin = normalize_url(_admin_url())
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"cq_test_{uuid.uuid4().hex[:10]}"
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        message = (
            f"PostgreSQL is not reachable at {admin.render_as_string(hide_password=True)} "
            f"({str(exc.orig).strip().splitlines()[0]}): start it, or set "
            "COREQUEUE_TEST_DATABASE_URL"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty, migrated corequeue database: each test runs on both engines."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'corequeue.sqlite3'}"
        Store.from_url(url).migrate()
        return url
    return empty_postgres(str(request.getfixturevalue("postgres_url")))


def empty_postgres(url: str) -> str:
    """Migrate the PostgreSQL database at ``url`` and empty its corequeue tables; returns url."""
    store = Store.from_url(url)
    store.migrate()
    with store.engine.begin() as conn:
        names = ", ".join(t.name for t in reversed(schema.metadata.sorted_tables))
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        conn.execute(
            sa.insert(schema.meta).values(key="schema_version", value=str(schema.SCHEMA_VERSION))
        )
    store.dispose()
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """The migrated store, also configured as corequeue's process-wide database."""
    configured = corequeue.configure(database_url, middleware=[])
    try:
        yield configured
    finally:
        runtime.reset()
