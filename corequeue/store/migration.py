"""Creating and upgrading the schema (`corequeue migrate`).

Version 1 is the tables of :mod:`corequeue.store.schema`. A later version appends its step to
:data:`UPGRADES`; a test applies every step to one database and the schema file to another and
compares them.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from corequeue.core.errors import SchemaError
from corequeue.core.states import ACTIVE_STATES
from corequeue.store import schema
from corequeue.store.base import StoreBase


def _to_version_2(conn: Connection) -> None:
    """Version 2: the jobs' counts of worker losses and deferrals; on SQLite, AUTOINCREMENT ids
    (a pruned job's id is never reused). SQLite cannot change a primary key in place: its jobs
    and attempts tables are rebuilt, every row and id kept."""
    if conn.dialect.name != "sqlite":
        conn.execute(
            sa.text(
                "ALTER TABLE corequeue_jobs"
                " ADD COLUMN worker_losses INTEGER DEFAULT '0' NOT NULL,"
                " ADD COLUMN deferrals INTEGER DEFAULT '0' NOT NULL"
            )
        )
        return
    rebuilt = (schema.jobs, schema.attempts)
    kept = {
        table.name: [c["name"] for c in sa.inspect(conn).get_columns(table.name)]
        for table in rebuilt
    }
    for table in rebuilt:
        for index in table.indexes:
            conn.execute(sa.text(f"DROP INDEX IF EXISTS {index.name}"))
        conn.execute(sa.text(f"ALTER TABLE {table.name} RENAME TO {table.name}_v1"))
    for table in rebuilt:
        table.create(conn)
    for table in rebuilt:
        columns = ", ".join(kept[table.name])
        conn.execute(
            sa.text(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {table.name}_v1")
        )
    for table in reversed(rebuilt):
        conn.execute(sa.text(f"DROP TABLE {table.name}_v1"))


def _to_version_3(conn: Connection) -> None:
    """Version 3 (flow control): the jobs' limit keys, the schedules' pause, the queues' state
    and the limit slots. A column the version-2 step's SQLite rebuild (from today's table)
    already made is not added twice."""
    _add_missing_columns(
        conn,
        {schema.jobs.name: ["concurrency_key", "rate_key"], schema.schedules.name: ["paused"]},
    )
    schema.queues.create(conn, checkfirst=True)
    schema.limit_slots.create(conn, checkfirst=True)


def _add_missing_columns(conn: Connection, added: dict[str, list[str]]) -> None:
    """Add the nullable or defaulted columns of today's tables that are not there yet (the
    version-2 step's SQLite rebuild makes today's tables)."""
    inspector = sa.inspect(conn)
    for table_name, names in added.items():
        present = {c["name"] for c in inspector.get_columns(table_name)}
        table = schema.metadata.tables[table_name]
        for name in names:
            if name in present:
                continue
            column = table.c[name]
            kind = column.type.compile(conn.dialect)
            if column.nullable:
                conn.execute(sa.text(f"ALTER TABLE {table_name} ADD COLUMN {name} {kind}"))
                continue
            assert isinstance(column.server_default, sa.DefaultClause)
            arg = column.server_default.arg
            # A literal ('' or a word) is quoted; an expression (sa.false()) is compiled for
            # the dialect: false on PostgreSQL, 0 on SQLite.
            default = (
                str(arg.compile(dialect=conn.dialect))
                if isinstance(arg, sa.ClauseElement)
                else f"'{arg}'"
            )
            conn.execute(
                sa.text(
                    f"ALTER TABLE {table_name} ADD COLUMN {name} {kind} DEFAULT {default} NOT NULL"
                )
            )


def _to_version_4(conn: Connection) -> None:
    """Version 4: uniqueness policies (the jobs' unique hold and policy; the unique index moves
    from the key of waiting or running jobs to the hold), the jobs' message headers and the
    attempts' retry rule. A waiting or running job with a key holds it, under the policy of
    the versions before ("finished")."""
    _add_missing_columns(
        conn,
        {
            schema.jobs.name: ["unique_hold", "unique_until", "headers"],
            schema.attempts.name: ["rule"],
        },
    )
    keyed = schema.jobs.c.unique_key != ""
    conn.execute(sa.update(schema.jobs).where(keyed).values(unique_until="finished"))
    conn.execute(
        sa.update(schema.jobs)
        .where(keyed, schema.jobs.c.state.in_([s.value for s in ACTIVE_STATES]))
        .values(unique_hold=schema.jobs.c.unique_key)
    )
    conn.execute(sa.text("DROP INDEX IF EXISTS ux_corequeue_jobs_unique"))
    for index in schema.jobs.indexes:
        if index.name == "ux_corequeue_jobs_unique_hold":
            index.create(conn, checkfirst=True)


#: The indexes version 5 adds (:mod:`corequeue.store.schema`).
VERSION_5_INDEXES = (
    "ix_corequeue_jobs_unsuccessful",
    "ix_corequeue_jobs_name_finished",
    "ix_corequeue_jobs_created",
)


def _to_version_5(conn: Connection) -> None:
    """Version 5: indexes for the dashboard and ``/metrics`` with millions of rows (failed and
    cancelled jobs, a job name's finished jobs, enqueue times). On a big table each takes a
    while to build, and writes to the jobs table wait meanwhile."""
    for index in schema.jobs.indexes:
        if index.name in VERSION_5_INDEXES:
            index.create(conn, checkfirst=True)


#: UPGRADES[v] takes a database at version v to version v + 1.
UPGRADES: dict[int, Callable[[Connection], None]] = {
    1: _to_version_2,
    2: _to_version_3,
    3: _to_version_4,
    4: _to_version_5,
}


def version(conn: Connection) -> int | None:
    """The schema version recorded in the database on ``conn`` (None: no tables)."""
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
    before = version(conn)
    if before is not None and before > schema.SCHEMA_VERSION:
        raise newer_schema(before, conn.engine.url)
    if before is None:
        schema.metadata.create_all(conn)
        conn.execute(
            sa.insert(schema.meta).values(key="schema_version", value=str(schema.SCHEMA_VERSION))
        )
        return None, schema.SCHEMA_VERSION
    current = before
    while current < schema.SCHEMA_VERSION:
        step = UPGRADES.get(current)
        if step is None:
            raise SchemaError(
                f"the corequeue tables are at schema version {current}, which this corequeue "
                f"cannot upgrade to {schema.SCHEMA_VERSION}: back up the data, then drop the "
                "corequeue_* tables and run `corequeue migrate` again"
            )
        step(conn)
        current += 1
    if current != before:
        conn.execute(
            sa.update(schema.meta)
            .where(schema.meta.c.key == "schema_version")
            .values(value=str(current))
        )
    return before, current


def newer_schema(found: int, url: URL) -> SchemaError:
    """The error for tables at a schema version newer than this code's."""
    where = url.render_as_string(hide_password=True)
    return SchemaError(
        f"the corequeue tables in {where} are at schema version {found}, newer than this "
        f"corequeue understands ({schema.SCHEMA_VERSION}): upgrade corequeue"
    )


class SchemaQueries(StoreBase):
    """The schema's version, its check, and `corequeue migrate`."""

    def schema_version(self) -> int | None:
        """The schema version recorded in the database, or None when there are no tables."""
        with self._errors(), self.read() as conn:
            if not sa.inspect(conn).has_table(schema.meta.name):
                return None
            value = conn.execute(
                sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
            ).scalar()
            return int(value) if value is not None else None

    def check_schema(self) -> None:
        """Raise SchemaError unless the tables exist at this package's schema version."""
        found = self.schema_version()
        where = self.url.render_as_string(hide_password=True)
        if found is None:
            raise SchemaError(
                f"the corequeue tables do not exist in {where}: run `corequeue migrate`"
            )
        if found < schema.SCHEMA_VERSION:
            raise SchemaError(
                f"the corequeue tables in {where} are at schema version {found}, this corequeue "
                f"needs {schema.SCHEMA_VERSION}: run `corequeue migrate`"
            )
        if found > schema.SCHEMA_VERSION:
            raise newer_schema(found, self.url)
        with self._errors(), self.read() as conn:
            present = set(sa.inspect(conn).get_table_names())
        missing = [t.name for t in schema.metadata.sorted_tables if t.name not in present]
        if missing:
            raise SchemaError(
                f"the corequeue tables in {where} are incomplete ({', '.join(missing)} missing): "
                "run `corequeue migrate`"
            )

    def migrate(self) -> tuple[int | None, int]:
        """Create or upgrade the tables. Returns (version before, version after)."""
        with self._errors(), self._begin() as conn:
            if self.is_postgresql:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x636F7265)))
            return upgrade(conn)
