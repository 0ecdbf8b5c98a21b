"""Schema version 4: uniqueness policies (the jobs' unique hold and policy under a new unique
index), the jobs' headers and the attempts' retry rule; the migration from version 3, on SQLite
and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from corequeue.store import schema
from corequeue.store.engine import normalize_url
from corequeue.store.queries import Store
from testing.schema_v3 import ADDED_IN_4, NEW_UNIQUE_INDEX, OLD_UNIQUE_INDEX, create_v3
from testing.store_support import T0, at, claim, insert, new_job


@pytest.fixture
def v3_url(database_url: str, tmp_path: Path) -> str:
    """A database of the same kind whose corequeue tables are at schema version 3."""
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'v3.sqlite3'}"
    engine = sa.create_engine(normalize_url(database_url))
    with engine.begin() as conn:
        schema.metadata.drop_all(conn)
        create_v3(conn)
    engine.dispose()
    return database_url


def _describe(store: Store) -> dict[str, Any]:
    """Each table's columns (name, nullable, in order) and indexes (name, columns, unique)."""
    with store.engine.connect() as conn:
        inspector = sa.inspect(conn)
        return {
            table.name: (
                [(c["name"], bool(c["nullable"])) for c in inspector.get_columns(table.name)],
                sorted(
                    (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                    for ix in inspector.get_indexes(table.name)
                ),
            )
            for table in schema.metadata.sorted_tables
        }


def _v3_job(conn: sa.Connection, state: str, key: str) -> int:
    jobs_v3 = sa.Table(schema.jobs.name, sa.MetaData(), autoload_with=conn)
    final = state in ("succeeded", "failed", "cancelled")
    return int(
        conn.execute(
            sa.insert(jobs_v3).returning(jobs_v3.c.id),
            {
                "name": "tests.Job",
                "queue": "default",
                "state": state,
                "params": '{"args":[],"kwargs":{}}',
                "run_at": T0.replace(tzinfo=None),
                "created_at": T0.replace(tzinfo=None),
                "finished_at": T0.replace(tzinfo=None) if final else None,
                "attempts": 1 if final else 0,
                "max_attempts": 1,
                "unique_key": key,
            },
        ).scalar_one()
    )


def test_version_3_is_migrated_with_its_rows_and_waiting_jobs_keep_their_keys(
    v3_url: str, database_url: str
) -> None:
    engine = sa.create_engine(normalize_url(v3_url))
    with engine.begin() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns(schema.jobs.name)}
        assert not columns & set(ADDED_IN_4[schema.jobs.name])
        done = _v3_job(conn, "succeeded", "k")
        waiting = _v3_job(conn, "requested", "k")
        plain = _v3_job(conn, "requested", "")
    engine.dispose()

    store = Store.from_url(v3_url)
    fresh = Store.from_url(database_url)
    try:
        assert store.migrate() == (3, schema.SCHEMA_VERSION)
        store.check_schema()
        assert _describe(store) == _describe(fresh)  # as a new database is made
        indexes = _describe(store)[schema.jobs.name][1]
        assert NEW_UNIQUE_INDEX in {ix[0] for ix in indexes}
        assert OLD_UNIQUE_INDEX not in {ix[0] for ix in indexes}
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    schema.jobs.c.id, schema.jobs.c.unique_hold, schema.jobs.c.unique_until
                ).order_by(schema.jobs.c.id)
            ).all()
        # The waiting job holds its key under the policy of version 3; the finished one not.
        assert [tuple(r) for r in rows] == [
            (done, "", "finished"),
            (waiting, "k", "finished"),
            (plain, "", ""),
        ]
        # The kept key still holds: a new enqueue gets the waiting job back; once that job has
        # finished, the key is free.
        assert insert(store, new_job(unique_key="k"), now=at(1)) == [waiting]
        assert waiting in [j.id for j in claim(store, now=at(2))]
        store.job_cancel(plain, now=at(2))
        store.job_cancel(waiting, now=at(3))
        (new,) = insert(store, new_job(unique_key="k"), now=at(4))
        assert new not in (done, waiting, plain)
    finally:
        store.dispose()
        fresh.dispose()


def test_the_new_columns_are_empty_for_a_new_job(store: Store) -> None:
    (job_id,) = insert(store, new_job())
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(
                schema.jobs.c.unique_hold, schema.jobs.c.unique_until, schema.jobs.c.headers
            ).where(schema.jobs.c.id == job_id)
        ).one()
        rules = conn.execute(sa.select(schema.attempts.c.rule)).all()
    assert tuple(row) == ("", "", None)
    assert rules == []
