"""Schema version 3 (flow control): the jobs' limit keys, the schedules' pause, the queues' state
and the limit slots; the migration from version 2, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from corequeue.core import limits
from corequeue.store import schema
from corequeue.store.engine import normalize_url
from corequeue.store.queries import Store
from corequeue.store.schedules import schedule_list
from testing.schema_v2 import TABLES_ADDED_IN_3, create_v2
from testing.store_support import T0, claim


@pytest.fixture
def v2_url(database_url: str, tmp_path: Path) -> str:
    """A database of the same kind whose corequeue tables are at schema version 2."""
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'v2.sqlite3'}"
    engine = sa.create_engine(normalize_url(database_url))
    with engine.begin() as conn:
        schema.metadata.drop_all(conn)
        create_v2(conn)
    engine.dispose()
    return database_url


def _describe(store: Store) -> dict[str, list[tuple[str, bool]]]:
    with store.engine.connect() as conn:
        inspector = sa.inspect(conn)
        return {
            table.name: [
                (c["name"], bool(c["nullable"])) for c in inspector.get_columns(table.name)
            ]
            for table in schema.metadata.sorted_tables
        }


def test_version_2_is_migrated_with_its_rows(v2_url: str, database_url: str) -> None:
    engine = sa.create_engine(normalize_url(v2_url))
    with engine.begin() as conn:
        assert not any(sa.inspect(conn).has_table(t) for t in TABLES_ADDED_IN_3)
        jobs_v2 = sa.Table(schema.jobs.name, sa.MetaData(), autoload_with=conn)
        kept = conn.execute(
            sa.insert(jobs_v2).returning(jobs_v2.c.id),
            {
                "name": "tests.Job",
                "queue": "default",
                "state": "requested",
                "params": '{"args":[],"kwargs":{}}',
                "run_at": T0.replace(tzinfo=None),
                "created_at": T0.replace(tzinfo=None),
                "attempts": 0,
                "max_attempts": 1,
            },
        ).scalar_one()
        schedules_v2 = sa.Table(schema.schedules.name, sa.MetaData(), autoload_with=conn)
        conn.execute(
            sa.insert(schedules_v2),
            {
                "name": "nightly",
                "job": "tests.Job",
                "expression": "0 3 * * *",
                "timezone": "UTC",
                "first_seen_at": T0.replace(tzinfo=None),
                "updated_at": T0.replace(tzinfo=None),
            },
        )
    engine.dispose()

    store = Store.from_url(v2_url)
    fresh = Store.from_url(database_url)
    try:
        assert store.migrate() == (2, schema.SCHEMA_VERSION)
        store.check_schema()
        assert _describe(store) == _describe(fresh)  # as a new database is made, column order too
        job = store.job_get(kept)
        assert job is not None and job.state.value == "requested"
        assert [(s.name, s.paused) for s in schedule_list(store)] == [("nightly", False)]
        # The kept job is unlimited; flow control works on the migrated tables.
        store.queue_configure({"default": (1, None)}, now=T0)
        assert [j.id for j in claim(store, now=T0, limit=5)] == [kept]
        (q,) = store.queue_list(now=T0)
        assert (q.name, q.concurrency_limit, q.running) == ("default", 1, 1)
        assert limits.queue_key("default") == "queue:default"
    finally:
        store.dispose()
        fresh.dispose()
