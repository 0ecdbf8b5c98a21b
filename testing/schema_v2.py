"""The corequeue tables as schema version 2 built them (before flow control), for the tests
that migrate a database of that version."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corequeue.store import schema
from testing.schema_v3 import without_version_4

#: The columns version 3 added, by table; and the tables it added.
ADDED_IN_3 = {
    schema.jobs.name: ("concurrency_key", "rate_key"),
    schema.schedules.name: ("paused",),
}
TABLES_ADDED_IN_3 = (schema.queues.name, schema.limit_slots.name)


def without_version_3(metadata: sa.MetaData) -> sa.MetaData:
    """A copy of ``metadata``'s tables less what versions 3 and 4 added."""
    old = sa.MetaData()
    for table in without_version_4(metadata).sorted_tables:
        if table.name in TABLES_ADDED_IN_3:
            continue
        copy = table.to_metadata(old)
        for name in ADDED_IN_3.get(table.name, ()):
            copy._columns.remove(copy.c[name])
    return old


def create_v2(conn: Connection) -> None:
    """Create version 2's tables on ``conn`` and record version 2."""
    old = without_version_3(schema.metadata)
    old.create_all(conn)
    conn.execute(sa.insert(old.tables[schema.meta.name]).values(key="schema_version", value="2"))
