"""Creating, checking and upgrading the schema, on SQLite and PostgreSQL.

The migration-diff test (as Procrastinate does it) builds the schema twice, once through
``migrate()`` (every upgrade step) and once straight from the table definitions, and compares
what the two databases report about themselves.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from corequeue.core.errors import SchemaError
from corequeue.store import migration, schema
from corequeue.store.engine import normalize_url
from corequeue.store.queries import Store
from testing.store_support import T0, insert, new_job


@pytest.fixture
def empty_url(database_url: str, tmp_path: Path) -> str:
    """A database of the same kind with no corequeue tables at all."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    engine = sa.create_engine(normalize_url(database_url))
    schema.metadata.drop_all(engine)
    engine.dispose()
    return database_url


@pytest.fixture(scope="module")
def second_postgres_url(postgres_url: str) -> Iterator[str]:
    """Another throwaway PostgreSQL database on the same server, dropped afterwards."""
    url = normalize_url(postgres_url)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"cq_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def other_empty_url(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A second empty database of the same kind, for comparing two schemas."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.sqlite3'}"
    url = str(request.getfixturevalue("second_postgres_url"))
    engine = sa.create_engine(normalize_url(url))
    schema.metadata.drop_all(engine)
    engine.dispose()
    return url


# -- checking ---------------------------------------------------------------------------------


def test_missing_tables_say_to_run_migrate(empty_url: str) -> None:
    store = Store.from_url(empty_url)
    try:
        assert store.schema_version() is None
        with pytest.raises(SchemaError, match=r"do not exist .*: run `corequeue migrate`"):
            store.check_schema()
        # A query that meets the missing tables says the same, instead of a driver error.
        with pytest.raises(SchemaError, match="run `corequeue migrate`"):
            store.job_get(1)
        with pytest.raises(SchemaError, match="run `corequeue migrate`"):
            store.job_insert_many([new_job()], now=T0)  # one job: PostgreSQL's short path
    finally:
        store.dispose()


@pytest.fixture
def set_version(store: Store) -> Iterator[Callable[[int], None]]:
    """Record another schema version in the database; the right one is put back afterwards."""

    def write(version: int) -> None:
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(schema.meta)
                .where(schema.meta.c.key == "schema_version")
                .values(value=str(version))
            )

    yield write
    write(schema.SCHEMA_VERSION)


def test_an_older_schema_says_to_run_migrate(
    store: Store, set_version: Callable[[int], None]
) -> None:
    set_version(schema.SCHEMA_VERSION - 1)
    message = (
        rf"at schema version {schema.SCHEMA_VERSION - 1}, this corequeue needs "
        rf"{schema.SCHEMA_VERSION}: run `corequeue migrate`"
    )
    with pytest.raises(SchemaError, match=message):
        store.check_schema()


def test_a_version_with_no_upgrade_step_is_refused_clearly(
    store: Store, set_version: Callable[[int], None]
) -> None:
    set_version(0)
    with pytest.raises(SchemaError, match="at schema version 0, which this corequeue cannot"):
        store.migrate()


def test_a_newer_schema_says_to_upgrade_corequeue(
    store: Store, set_version: Callable[[int], None]
) -> None:
    set_version(schema.SCHEMA_VERSION + 1)
    with pytest.raises(SchemaError, match=r"newer than this corequeue understands.*upgrade"):
        store.check_schema()


def test_a_missing_table_is_found_even_at_the_right_version(store: Store) -> None:
    store.check_schema()
    with store.engine.begin() as conn:
        schema.workers.drop(conn)
    try:
        with pytest.raises(SchemaError, match=r"incomplete \(corequeue_workers missing\)"):
            store.check_schema()
    finally:
        with store.engine.begin() as conn:
            schema.workers.create(conn)


# -- migrating --------------------------------------------------------------------------------


def test_migrate_creates_the_schema_then_does_nothing(empty_url: str) -> None:
    store = Store.from_url(empty_url)
    try:
        assert store.migrate() == (None, schema.SCHEMA_VERSION)
        store.check_schema()
        (job_id,) = insert(store, new_job())
        assert store.migrate() == (schema.SCHEMA_VERSION, schema.SCHEMA_VERSION)
        assert store.job_get(job_id) is not None
    finally:
        store.dispose()


def migrate_twice_at_once(url: str) -> set[Any]:
    """What two migrations of ``url`` started at once returned (or raised)."""
    results: list[Any] = []

    def migrate() -> None:
        store = Store.from_url(url)
        try:
            results.append(store.migrate())
        except Exception as exc:
            results.append(exc)
        finally:
            store.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return set(results)


#: One migration creates the tables, the other waits for it and finds them.
BOTH_MIGRATED = {(None, schema.SCHEMA_VERSION), (schema.SCHEMA_VERSION, schema.SCHEMA_VERSION)}


def test_two_migrations_at_once_both_succeed(empty_url: str) -> None:
    assert migrate_twice_at_once(empty_url) == BOTH_MIGRATED


def test_two_processes_starting_on_a_new_sqlite_file_both_migrate(tmp_path: Path) -> None:
    # The first connection to a new file switches it to WAL, which needs the file to itself;
    # SQLite answered the other "database is locked" at once (about one race in four) until
    # the switch was tried again within the busy timeout.
    for round_ in range(50):
        results = migrate_twice_at_once(f"sqlite:///{tmp_path / f'new-{round_}.sqlite3'}")
        assert results == BOTH_MIGRATED, (round_, results)


def test_migrate_runs_each_upgrade_step_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[int] = []
    current = schema.SCHEMA_VERSION

    def step(conn: sa.Connection) -> None:
        ran.append(current)
        conn.execute(sa.text("CREATE TABLE corequeue_probe (x INTEGER)"))

    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(migration.UPGRADES, current, step)
    with pytest.raises(SchemaError, match="run `corequeue migrate`"):
        store.check_schema()
    assert store.migrate() == (current, current + 1)
    assert store.migrate() == (current + 1, current + 1)
    assert ran == [current]
    store.check_schema()
    with store.engine.begin() as conn:  # back to this code's version: migrate refuses newer ones
        conn.execute(sa.text("DROP TABLE corequeue_probe"))
        conn.execute(
            sa.update(schema.meta)
            .where(schema.meta.c.key == "schema_version")
            .values(value=str(current))
        )


# -- the migration diff -----------------------------------------------------------------------


def _normal(sql: Any) -> str:
    return re.sub(r"\s+", " ", str(sql)).strip().lower()


def describe(url: str) -> dict[str, Any]:
    """Everything the database says about its corequeue tables, in comparable form."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables: dict[str, Any] = {}
            # Only corequeue's: the session's database may hold other tests' application tables.
            ours = [t for t in sorted(inspector.get_table_names()) if t.startswith("corequeue_")]
            for table in ours:
                tables[table] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], _normal(c.get("default")))
                        for c in inspector.get_columns(table)
                    ],
                    "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                    "foreign keys": sorted(
                        (
                            tuple(fk["constrained_columns"]),
                            fk["referred_table"],
                            tuple(fk["referred_columns"]),
                            sorted(fk.get("options", {}).items()),
                        )
                        for fk in inspector.get_foreign_keys(table)
                    ),
                    "indexes": sorted(
                        (
                            ix["name"],
                            tuple(str(c) for c in ix["column_names"]),
                            ix["unique"],
                            sorted(
                                (k, _normal(v)) for k, v in ix.get("dialect_options", {}).items()
                            ),
                            sorted((ix.get("column_sorting") or {}).items()),
                        )
                        for ix in inspector.get_indexes(table)
                    ),
                    "checks": sorted(
                        (ck["name"], _normal(ck["sqltext"]))
                        for ck in inspector.get_check_constraints(table)
                    ),
                }
            # What the engine itself stores: index definitions with their WHERE clauses.
            if conn.dialect.name == "sqlite":
                raw = conn.execute(
                    sa.text(
                        "SELECT type, name, sql FROM sqlite_master "
                        "WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
                    )
                ).all()
            else:
                raw = conn.execute(
                    sa.text(
                        "SELECT 'index', indexname, indexdef FROM pg_indexes "
                        "WHERE schemaname = current_schema() "
                        "UNION ALL SELECT 'constraint', conname, pg_get_constraintdef(oid) "
                        "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace "
                        "ORDER BY 1, 2"
                    )
                ).all()
            return {"tables": tables, "raw": [tuple(r) for r in raw if "corequeue" in r[1]]}
    finally:
        engine.dispose()


def test_migrate_builds_exactly_the_schema_the_tables_define(
    empty_url: str, other_empty_url: str
) -> None:
    migrated = Store.from_url(empty_url)
    migrated.migrate()
    migrated.dispose()
    created = sa.create_engine(normalize_url(other_empty_url))
    with created.begin() as conn:
        schema.metadata.create_all(conn)
        conn.execute(
            sa.insert(schema.meta).values(key="schema_version", value=str(schema.SCHEMA_VERSION))
        )
    created.dispose()

    after_migrate, from_tables = describe(empty_url), describe(other_empty_url)
    assert after_migrate == from_tables

    # The comparison covers what matters: every table, index, check and partial-index predicate.
    tables = after_migrate["tables"]
    assert set(tables) == set(schema.metadata.tables)
    for table in schema.metadata.sorted_tables:
        reflected = tables[table.name]
        assert [c[0] for c in reflected["columns"]] == [c.name for c in table.columns]
        assert {ix[0] for ix in reflected["indexes"]} >= {ix.name for ix in table.indexes}
        expected_checks = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        assert {ck[0] for ck in reflected["checks"]} == expected_checks
    ready = next(
        sql for kind, name, sql in after_migrate["raw"] if name == "ix_corequeue_jobs_ready"
    )
    assert re.search(r"where \W*state\W.*= 'requested'", _normal(ready))
