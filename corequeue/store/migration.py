"""Creating and upgrading the schema (`corequeue migrate`).

Version 1 is the tables of :mod:`corequeue.store.schema`. A later version appends its step to
:data:`UPGRADES`; a test applies every step to one database and the schema file to another and
compares them.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corequeue.core.errors import SchemaError
from corequeue.store import schema

#: UPGRADES[v] takes a database at version v to version v + 1.
UPGRADES: dict[int, Callable[[Connection], None]] = {}


def _version(conn: Connection) -> int | None:
    if not sa.inspect(conn).has_table(schema.meta.name):
        return None
    value = conn.execute(
        sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
    ).scalar()
    return int(value) if value is not None else None


def upgrade(conn: Connection) -> tuple[int | None, int]:
    """Bring the database on ``conn`` to :data:`schema.SCHEMA_VERSION`.

    Returns (version before, version after); before is None for a new database.
    """
    before = _version(conn)
    if before is None:
        schema.metadata.create_all(conn)
        conn.execute(
            sa.insert(schema.meta).values(key="schema_version", value=str(schema.SCHEMA_VERSION))
        )
        return None, schema.SCHEMA_VERSION
    version = before
    while version < schema.SCHEMA_VERSION:
        step = UPGRADES.get(version)
        if step is None:
            raise SchemaError(
                f"the corequeue tables are at schema version {version}, which this corequeue "
                f"cannot upgrade to {schema.SCHEMA_VERSION}: back up the data, then drop the "
                "corequeue_* tables and run `corequeue migrate` again"
            )
        step(conn)
        version += 1
    if version != before:
        conn.execute(
            sa.update(schema.meta)
            .where(schema.meta.c.key == "schema_version")
            .values(value=str(version))
        )
    return before, version
