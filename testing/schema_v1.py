"""The corequeue tables as schema version 1 built them (before the crash-semantics columns and
SQLite's AUTOINCREMENT), for the tests that migrate a database of that version."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corequeue.store import schema
from testing.schema_v2 import without_version_3

#: The columns version 2 added to the jobs table.
ADDED_IN_2 = ("worker_losses", "deferrals")


def metadata_v1() -> sa.MetaData:
    """Version 1's tables: today's, less the columns version 2 added, without AUTOINCREMENT."""
    old = sa.MetaData()
    for table in without_version_3(schema.metadata).sorted_tables:
        copy = table.to_metadata(old)
        for name in ADDED_IN_2:
            if name in copy.c:
                copy._columns.remove(copy.c[name])
        copy.dialect_options["sqlite"]["autoincrement"] = False
    return old


def create_v1(conn: Connection) -> None:
    """Create version 1's tables on ``conn`` and record version 1."""
    old = metadata_v1()
    old.create_all(conn)
    conn.execute(sa.insert(old.tables[schema.meta.name]).values(key="schema_version", value="1"))
