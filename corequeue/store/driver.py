"""The psycopg fast path: one compiled statement run on a raw connection in autocommit.

For the statements on the hot paths that are atomic alone (one job's INSERT, the worker's claim
and its batches of endings). SQLAlchemy's execution path costs about as much as such a statement
(several driver calls to switch autocommit on and off, result set-up), so these skip it. The
connection is the process's kept one (:class:`~corequeue.store.engine.KeptConnection`), or a
pooled one while another thread has that. Errors are wrapped as SQLAlchemy would wrap them, and
a dead connection is dropped. Statement events (``before_cursor_execute``) do not fire for
these statements. :func:`run_in` runs such a statement inside a transaction of the caller's
(the limited claim's several statements), on that transaction's driver connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine

from corequeue.store import schema
from corequeue.store.engine import KeptConnection

#: Runs one statement and returns its rows.
Driver = Callable[[str, dict[str, Any]], list[tuple[Any, ...]]]

#: The column type's conversions, for the statements the driver runs.
UTC_TYPE = schema.UTCDateTime()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(when: datetime | None) -> int | None:
    """``when`` as whole microseconds since the epoch (exact, unlike a float timestamp)."""
    return None if when is None else (when - _EPOCH) // _MICROSECOND


def as_datetime(when: datetime | int | None) -> datetime | None:
    """``when`` as an aware UTC datetime: given as one, or as :func:`micros` made it."""
    if when is None or isinstance(when, datetime):
        return when
    return _EPOCH + when * _MICROSECOND


class Compiled(NamedTuple):
    """A statement compiled once for the driver (:func:`run`)."""

    sql: str
    defaults: dict[str, Any]  # its parameters' default values
    times: tuple[str, ...]  # its UTCDateTime parameters: bound as the column type binds them


def compile_statement(
    dialect: Dialect,
    stmt: sa.Insert | sa.Update | sa.TextClause,
    keys: Sequence[str] | None = None,
) -> Compiled:
    """``stmt`` rendered once for the driver (``keys``: an INSERT's columns)."""
    done = stmt.compile(
        dialect=dialect,
        column_keys=list(keys) if keys is not None else None,
        compile_kwargs={"render_postcompile": True},
    )
    times = tuple(
        name for name, bind in done.binds.items() if isinstance(bind.type, schema.UTCDateTime)
    )
    return Compiled(str(done), dict(done.params), times)


def run(
    driver: Driver, dialect: Dialect, compiled: Compiled, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Run a statement compiled by :func:`compile_statement` through ``driver``."""
    values = compiled.defaults | params
    utc = UTC_TYPE
    for name in compiled.times:
        values[name] = utc.process_bind_param(values[name], dialect)
    return driver(compiled.sql, values)


def run_in(conn: Connection, compiled: Compiled, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run a statement compiled by :func:`compile_statement` on ``conn``, in its transaction,
    on its driver connection: rows are the driver's tuples (SQLAlchemy's result rows cost
    about as much again per row), and no statement event fires, as with :func:`run`. Errors
    are wrapped as SQLAlchemy would wrap them; a lost connection is invalidated when the
    transaction rolls back."""
    values = compiled.defaults | params
    utc, dialect = UTC_TYPE, conn.dialect
    for name in compiled.times:
        values[name] = utc.process_bind_param(values[name], dialect)
    raw: Any = conn.connection.driver_connection
    try:
        return _rows_of(raw, compiled.sql, values)
    except dialect.loaded_dbapi.Error as e:
        raise _wrapped(dialect, e, compiled.sql, values, _lost(dialect, e, raw)) from e


def _wrapped(dialect: Dialect, e: Exception, sql: str | None, params: Any, lost: bool) -> Exception:
    return sa.exc.DBAPIError.instance(
        sql,
        params,
        e,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )


def _lost(dialect: Dialect, e: Any, conn: Any) -> bool:
    """Whether the connection is gone (closed, or the error says it was cut)."""
    return bool(conn.closed) or bool(dialect.is_disconnect(e, conn, None))


def _rows_of(conn: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    cursor = conn.cursor()
    cursor.execute(sql, params)
    rows: list[tuple[Any, ...]] = cursor.fetchall() if cursor.description is not None else []
    cursor.close()
    return rows


def _on_pooled(
    dialect: Dialect, pooled: Any, sql: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Run on a connection lent by the pool, in autocommit, and give it back as it came."""
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        dbapi_conn: Any = pooled.driver_connection
        try:
            dbapi_conn.autocommit = True
            try:
                return _rows_of(dbapi_conn, sql, params)
            finally:  # back in the pool, the connection runs transactions again
                if not dbapi_conn.closed:
                    dbapi_conn.autocommit = False
        except dbapi_error as e:
            dead = _lost(dialect, e, dbapi_conn)
            if dead:
                pooled.invalidate(e)
            raise _wrapped(dialect, e, sql, params, dead) from e
    finally:
        pooled.close()


def make_driver(engine: Engine) -> Driver | None:
    """The driver of ``engine``'s database; None unless it is PostgreSQL through psycopg."""
    dialect = engine.dialect
    if dialect.name != "postgresql" or dialect.driver not in ("psycopg", "psycopg2"):
        return None
    dbapi_error = dialect.loaded_dbapi.Error
    kept = KeptConnection(engine)

    def execute(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            conn = kept.take(engine)
            pooled = engine.raw_connection() if conn is None else None
        except dbapi_error as e:  # neither the pool nor take() wraps a failed connect
            raise _wrapped(dialect, e, None, None, True) from e
        if pooled is not None:
            return _on_pooled(dialect, pooled, sql, params)
        broken = False
        try:
            return _rows_of(conn, sql, params)
        except dbapi_error as e:
            broken = _lost(dialect, e, conn)
            raise _wrapped(dialect, e, sql, params, broken) from e
        finally:
            kept.give_back(broken=broken)

    return execute
