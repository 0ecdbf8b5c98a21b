"""The corequeue tables as schema version 3 built them (before uniqueness policies, headers and
retry rules), for the tests that migrate a database of that version."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corequeue.store import schema

#: The columns version 4 added, by table.
ADDED_IN_4 = {
    schema.jobs.name: ("unique_hold", "unique_until", "headers"),
    schema.attempts.name: ("rule",),
}
#: The unique index version 4 replaced, and the one it made.
OLD_UNIQUE_INDEX = "ux_corequeue_jobs_unique"
NEW_UNIQUE_INDEX = "ux_corequeue_jobs_unique_hold"


def without_version_4(metadata: sa.MetaData) -> sa.MetaData:
    """A copy of ``metadata``'s tables less what version 4 added, with version 3's unique index
    (a key held by every waiting or running job that has one)."""
    old = sa.MetaData()
    for table in metadata.sorted_tables:
        copy = table.to_metadata(old)
        for name in ADDED_IN_4.get(table.name, ()):
            copy._columns.remove(copy.c[name])
        for index in list(copy.indexes):
            if index.name == NEW_UNIQUE_INDEX:
                copy.indexes.discard(index)
                held = sa.text("unique_key <> '' AND state IN ('requested', 'running')")
                sa.Index(
                    OLD_UNIQUE_INDEX,
                    copy.c.name,
                    copy.c.unique_key,
                    unique=True,
                    postgresql_where=held,
                    sqlite_where=held,
                )
    return old


def create_v3(conn: Connection) -> None:
    """Create version 3's tables on ``conn`` and record version 3."""
    old = without_version_4(schema.metadata)
    old.create_all(conn)
    conn.execute(sa.insert(old.tables[schema.meta.name]).values(key="schema_version", value="3"))
