"""Schema version 5: the dashboard's indexes (failed and cancelled jobs, a job name's finished
jobs, enqueue times); the migration from version 4, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from corequeue.store import schema
from corequeue.store.migration import VERSION_5_INDEXES
from corequeue.store.queries import Store


def indexes(store: Store) -> dict[str, Any]:
    """The jobs table's indexes: name -> (columns, unique)."""
    with store.engine.connect() as conn:
        return {
            ix["name"]: (tuple(ix["column_names"]), bool(ix["unique"]))
            for ix in sa.inspect(conn).get_indexes(schema.jobs.name)
        }


def test_version_4_tables_get_the_indexes_of_a_new_database(database_url: str) -> None:
    store = Store.from_url(database_url)  # migrated: today's tables
    try:
        fresh = indexes(store)
        with store.engine.begin() as conn:  # back to version 4: without the version 5 indexes
            for name in VERSION_5_INDEXES:
                conn.execute(sa.text(f"DROP INDEX {name}"))
            conn.execute(
                sa.update(schema.meta)
                .where(schema.meta.c.key == "schema_version")
                .values(value="4")
            )
        assert set(fresh) - set(indexes(store)) == set(VERSION_5_INDEXES)

        assert store.migrate() == (4, schema.SCHEMA_VERSION)

        assert indexes(store) == fresh
        assert fresh["ix_corequeue_jobs_unsuccessful"] == (("state", "queue", "id"), False)
        assert fresh["ix_corequeue_jobs_name_finished"][0][:2] == ("name", "finished_at")
        assert fresh["ix_corequeue_jobs_created"] == (("created_at",), False)
    finally:
        store.dispose()
