"""Statements on a PostgreSQL server rather than on corequeue's tables, for the test plugin
(:mod:`corequeue.testing.postgres`): whether a server answers, and creating and dropping the
scratch databases of a test session."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from corequeue.store.engine import normalize_url


def unreachable(url: str) -> str | None:
    """None when the server at ``url`` answers a query; else the first line of the error."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        return str(exc.orig or exc).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


def create_database(admin_url: str, prefix: str = "cq_test_") -> str:
    """Create an empty database, named ``prefix`` and a random suffix, on the server of
    ``admin_url`` (whose user may CREATE DATABASE). Returns its URL."""
    admin = normalize_url(admin_url)
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url`` (its sessions ended first) through ``admin_url``."""
    name = normalize_url(url).database
    engine = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        engine.dispose()
