"""Engines for corequeue's databases, and the one place driver exceptions are translated."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url

from corequeue.core.errors import ConfigError, DatabaseUnavailable, SchemaError

#: Execution option for connections that only read (see ``Store.read``).
READ_ONLY = "corequeue_read_only"
SUPPORTED = ("sqlite", "postgresql")


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; plain ``postgresql://`` URLs use psycopg 3. Raises ConfigError."""
    if isinstance(url, str):
        text = url.strip()
        if text.startswith("postgres://"):
            text = "postgresql://" + text[len("postgres://") :]
        try:
            parsed = make_url(text)
        except exc.ArgumentError:
            raise ConfigError(
                f"invalid database URL {url!r}: expected sqlite:///path/to/file.sqlite3 "
                "or postgresql://user@host/dbname"
            ) from None
    else:
        parsed = url
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise ConfigError(
            f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)!r}:"
            " corequeue runs on sqlite:/// and postgresql:// URLs"
        )
    if backend == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def load_driver(url: str) -> None:
    """Import the dialect and the driver (psycopg, sqlite3) that an engine for ``url`` would
    use, connecting to nothing (only the URL's scheme counts). The fork server does it once, so
    that each child it forks starts with them loaded. Raises ConfigError for an unsupported
    URL, ImportError when the driver is missing."""
    normalize_url(url).get_dialect().import_dbapi()


#: PostgreSQL session settings for a worker's own connections. The claim must walk the small
#: partial index of waiting jobs in order; right after a bulk enqueue the planner's statistics
#: still say that index is nearly empty, and it would rather sort the whole backlog (a bitmap
#: scan and a sort per claim). These settings keep the ordered index scan however stale the
#: statistics are. They apply only to the worker's engine, never to the application's.
WORKER_PLANNER_OPTIONS = "-c enable_bitmapscan=off -c enable_sort=off"


def create_engine(
    url: str | URL, *, worker: bool = False, synchronous_commit: bool = True, **kwargs: Any
) -> Engine:
    """An engine set up for corequeue: WAL and immediate transactions on SQLite.

    ``worker=True`` is for a worker's own connections (PostgreSQL: the planner settings above,
    no pre-ping on the hot path, ``synchronous_commit`` as given).
    """
    parsed = normalize_url(url)
    if worker and parsed.get_backend_name() == "postgresql":
        options = WORKER_PLANNER_OPTIONS
        if not synchronous_commit:
            options += " -c synchronous_commit=off"
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args["options"] = f"{connect_args.get('options', '')} {options}".strip()
        kwargs.setdefault("pool_pre_ping", False)
    if parsed.get_backend_name() == "sqlite":
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
        try:
            engine = sa.create_engine(parsed, **kwargs)
        except exc.ArgumentError as e:
            raise ConfigError(f"invalid SQLite URL {url!r}: {e}") from None
        setup_sqlite(engine)
        return engine
    if not worker and "pool_pre_ping" not in kwargs:
        kwargs["pool_pre_ping"] = False  # ping_after_idle below, instead of on every checkout
        ping = True
    else:
        ping = False
    # A server that stops answering (a network path that drops packets rather than refusing)
    # must not hang a worker: bounded connects, and TCP keepalives on idle connections.
    connect_args = kwargs.setdefault("connect_args", {})
    for key, value in (
        ("connect_timeout", 10),
        ("keepalives", 1),
        ("keepalives_idle", 30),
        ("keepalives_interval", 10),
        ("keepalives_count", 3),
    ):
        connect_args.setdefault(key, value)
    # enqueue_many: up to 5,000 rows per INSERT (12 columns each stay under PostgreSQL's
    # 65,535 parameters), so 10,000 jobs take two statements.
    kwargs.setdefault("insertmanyvalues_page_size", 5000)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"PostgreSQL needs psycopg 3 ({e.name} is missing): pip install 'corequeue[postgres]'"
        ) from None
    if ping:
        ping_after_idle(engine)
    return engine


#: An application's pooled connection idle for longer than this is pinged before use.
PING_AFTER_IDLE = 1.0
_IDLE_SINCE = "corequeue_idle_since"


_PING_AFTER: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def idle_ping(engine: Engine) -> float | None:
    """Seconds of idleness after which ``engine``'s connections are pinged before use (None:
    never: a worker's engine, whose errors go to its outage handling)."""
    return _PING_AFTER.get(engine)


def ping_after_idle(engine: Engine, idle: float = PING_AFTER_IDLE) -> None:
    """Check a pooled connection with a round trip before use only when it sat idle for more
    than ``idle`` seconds (a server restart or a dropped connection shows up then); a dead one
    is replaced. SQLAlchemy's ``pool_pre_ping`` pings on every checkout, which doubles the cost
    of a lone ``run_in_worker()``; a connection used a moment ago had a live server then."""
    _PING_AFTER[engine] = idle

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        closed = bool(getattr(dbapi_connection, "closed", False))
        if not closed and (since is None or time.monotonic() - since <= idle):
            return
        try:
            alive = not closed and engine.dialect.do_ping(dbapi_connection)
        except Exception as e:
            raise exc.DisconnectionError(f"pooled connection is dead: {e}") from e
        if not alive:
            raise exc.DisconnectionError("pooled connection is dead")


#: How long a SQLite connection waits for another's lock (milliseconds).
SQLITE_BUSY_MS = 30_000


def _wal(cursor: Any) -> None:
    """Put the database in WAL mode. Switching a new file needs it to itself, and when another
    connection holds a lock SQLite may answer "database is locked" at once rather than wait
    (waiting could deadlock), so two processes starting on a new file at once (a worker and
    ``corequeue migrate``) could fail. So try again, within the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def setup_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout and ``BEGIN IMMEDIATE``: writers queue up instead of failing with
    "database is locked" when a read transaction would have to upgrade to a write."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        if engine.url.database not in (None, "", ":memory:"):
            _wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # Reads (marked READ_ONLY) take a deferred transaction: under WAL they see the last
        # commit and never wait for a writer, even one holding a long transaction.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


_MISSING_TABLE = ("no such table", "does not exist", "undefinedtable", "no such column")


@contextlib.contextmanager
def translate_errors(url: URL | None = None) -> Iterator[None]:
    """Turn driver exceptions into corequeue's: an unreachable server is DatabaseUnavailable,
    a missing table SchemaError. Everything else passes through unchanged."""
    try:
        yield
    except exc.DBAPIError as e:
        where = f" at {url.render_as_string(hide_password=True)}" if url is not None else ""
        message = str(e.orig) if e.orig is not None else str(e)
        lowered = message.lower()
        if any(m in lowered for m in _MISSING_TABLE) and "corequeue_" in lowered:
            raise SchemaError(
                f"the corequeue tables are missing or outdated{where}: run `corequeue migrate` "
                f"({message.splitlines()[0]})"
            ) from e
        if isinstance(e, (exc.OperationalError, exc.InterfaceError)) or e.connection_invalidated:
            first = message.strip().splitlines()[0] if message.strip() else type(e).__name__
            raise DatabaseUnavailable(f"database unavailable{where}: {first}") from e
        raise


class KeptConnection:
    """One driver connection a process keeps outside its engine's pool, in autocommit, for
    the statements that go straight to the driver (``run_in_worker()``'s INSERT, the worker's
    claim). A pool check-out and return, with their events and the autocommit switches, cost
    about a tenth of such a statement.

    One thread at a time holds it: :meth:`take` returns None while another thread does, and
    that caller uses the pool as before (so there is never a wait, nor more than one extra
    connection). Taken from the pool once, so the engine's ``connect`` events apply, then
    detached from it: it takes none of the pool's slots. After ``fork()`` the child does not
    touch its parent's connection (not even to close it, which would end the parent's
    session) and opens its own. Closed when the engine is disposed or garbage-collected.
    """

    def __init__(self, engine: Engine) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        self._used = 0.0
        self._idle = idle_ping(engine)
        event.listen(engine, "engine_disposed", self._on_dispose)
        weakref.finalize(engine, KeptConnection.close, self)

    def take(self, engine: Engine) -> Any:
        """The connection (this thread holds it until :meth:`give_back`), or None when another
        thread holds it. Raises the driver's error when it cannot connect."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn: Any = self._conn
            if conn is not None and self._pid != os.getpid():
                _INHERITED.append(conn)  # the parent's: never used, closed nor collected here
                conn = self._conn = None
            idle = self._idle is not None and time.monotonic() - self._used > self._idle
            if conn is not None and (conn.closed or (idle and not _alive(engine, conn))):
                self._discard()
                conn = None
            if conn is None:
                pooled = engine.raw_connection()
                conn = pooled.dbapi_connection
                pooled.detach()
                conn.autocommit = True
                self._conn, self._pid = conn, os.getpid()
        except BaseException:
            self._lock.release()
            raise
        return conn

    def give_back(self, *, broken: bool = False) -> None:
        """Release the connection taken with :meth:`take` (``broken``: close it; the next
        caller connects again)."""
        if broken:
            self._discard()
        self._used = time.monotonic()
        self._lock.release()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                conn.close()

    def _on_dispose(self, engine: Engine) -> None:
        self.close()

    def close(self) -> None:
        if self._pid != os.getpid():
            # Nothing of this process's: a forked child's (whose lock another thread of the
            # parent may have held at the fork), or none opened yet.
            return
        with self._lock:
            self._discard()


#: Kept connections inherited through fork(): referenced for good in the child, which never
#: uses nor closes them (closing would end the parent's session; psycopg does not when such an
#: object is collected, but it warns about an open connection deleted).
_INHERITED: list[Any] = []


def _alive(engine: Engine, conn: Any) -> bool:
    try:
        return bool(engine.dialect.do_ping(conn))
    except Exception:
        return False
