"""The query seam: every SQL statement corequeue runs, as small noun-first methods.

Batch operations end in ``_many``. Every write that changes a job's state re-checks, in its
WHERE clause, the state (and lease) it expects, so a late writer changes nothing. The decisions
themselves come from :mod:`corequeue.core.lifecycle`; this module only persists them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from corequeue.core import lifecycle
from corequeue.core.errors import InvalidTransition, SchemaError, UniqueViolation
from corequeue.core.states import ACTIVE_STATES, FINAL_STATES, JobState, Outcome
from corequeue.store import schema
from corequeue.store.engine import READ_ONLY, KeptConnection, create_engine, translate_errors
from corequeue.store.records import (
    AttemptEnd,
    AttemptRecord,
    ClaimedJob,
    Inserted,
    JobFilter,
    JobRecord,
    NewJob,
    WorkerRecord,
)

jobs, attempts, workers, meta = schema.jobs, schema.attempts, schema.workers, schema.meta

#: PostgreSQL channel that enqueues notify; its payload is the queue name.
NOTIFY_CHANNEL = "corequeue_jobs"

_JOB_COLUMNS = [c for c in jobs.c]
#: What a claim returns: the first fields of ``ClaimedJob``, in its order.
_CLAIM_COLUMNS = [
    jobs.c.id,
    jobs.c.name,
    jobs.c.params,
    jobs.c.queue,
    jobs.c.priority,
    jobs.c.run_at,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.timeout,
]


def _at(micros: str) -> str:
    """SQL: the timestamptz ``micros`` microseconds after the epoch, exactly (whole seconds
    and the rest apart: a float8 holds every microsecond only until the year 2255)."""
    return (
        f"timestamptz 'epoch' + ({micros} / 1000000) * interval '1 second'"
        f" + ({micros} % 1000000) * interval '1 microsecond'"
    )


#: The outcome whose attempt is recorded on its job row alone, with no attempt row: a success
#: is final (no retry follows it), so the job row keeps that attempt for good (its number in
#: ``attempts``, its start, end, worker and result). ``attempt_list`` shows it with the rest.
#: One INSERT (and its foreign-key check) less per successful job: alternating drains of
#: 60,000 no-op jobs ran 9% faster without it.
ON_JOB_ROW = Outcome.SUCCEEDED
#: The state of a job whose last attempt is kept on its row: where the core's table sends a
#: running job on that outcome (a state no transition leaves: tests/store holds that).
(ON_JOB_ROW_STATE,) = lifecycle.next_states(JobState.RUNNING, ON_JOB_ROW)


#: A batch of attempt endings in one round trip (PostgreSQL), by columns: each column is one
#: parameter, in this order, a PostgreSQL array literal of integers (``int``: "{1,NULL,3}") or
#: a JSON array of strings (``text``: quoting left to json.dumps), unnested into rows in SQL.
#: Times are integer microseconds since the epoch (exact). Building the columns costs half as
#: much as one JSON object per ending (json.dumps writes keys and floats slowly); the
#: statement takes PostgreSQL as long as json_to_recordset did.
_ENDING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "int"),
    ("lease", "text"),
    ("state", "text"),
    ("attempts", "int"),
    ("max_attempts", "int"),
    ("new_lease", "text"),
    ("run_at", "int"),
    ("finished_at", "int"),
    ("result", "text"),
    ("error", "text"),
    ("number", "int"),
    ("outcome", "text"),
    ("worker_id", "text"),
    ("started_at", "int"),
    ("ended_at", "int"),
    ("error_type", "text"),
    ("error_message", "text"),
    ("traceback", "text"),
)


def _ending_row(e: AttemptEnd, ended: int | None) -> tuple[Any, ...]:
    """The values of ``e`` in the order of _ENDING_COLUMNS (one tuple per ending: cheaper than a
    function call per value). ``ended``: ``e.finished_at`` in microseconds."""
    c = e.change
    return (
        e.job_id,
        e.lease,
        c.state,
        c.attempts,
        c.max_attempts,
        c.lease,
        _micros(c.run_at),
        ended if c.finished_at is e.finished_at else _micros(c.finished_at),
        e.result,
        _error_line(e),
        e.attempt,
        e.outcome,
        e.worker_id,
        _micros(e.started_at),
        ended,
        e.error_type,
        e.error_message,
        e.traceback,
    )


def _ending_column(name: str, kind: str) -> str:
    if kind == "int":
        return f"CAST(:{name} AS bigint[])"
    # In the JSON array's order, by ORDINALITY: unnest pairs the columns up by position.
    return (
        f"ARRAY(SELECT t FROM json_array_elements_text(CAST(:{name} AS json))"
        " WITH ORDINALITY AS a(t, n) ORDER BY n)"
    )


def _ending_params(ends: Sequence[AttemptEnd]) -> dict[str, str]:
    """The parameters of _FINISH_POSTGRESQL for ``ends``: one per column of _ENDING_COLUMNS.
    A column with no value in the whole batch (a batch of successes has no errors) is sent
    empty: unnest pads a shorter array with NULLs, and PostgreSQL has nothing to parse."""
    rows = []
    when, ended = None, None
    for e in ends:
        if e.finished_at is not when:  # endings decided together share their end time
            when, ended = e.finished_at, _micros(e.finished_at)
        rows.append(_ending_row(e, ended))
    params: dict[str, str] = {}
    for (name, kind), values in zip(_ENDING_COLUMNS, zip(*rows, strict=True), strict=True):
        if kind == "int":
            listed = ",".join(["NULL" if v is None else str(v) for v in values])
            params[name] = "{" + listed + "}"
        elif values.count(None) == len(values):
            params[name] = "[]"
        else:  # str enums are strs: JSON writes their values
            params[name] = json.dumps(values, separators=(",", ":"))
    return params


#: The compare-and-set writes of a batch of endings as ONE statement: the UPDATE's WHERE is
#: the check (still running, same lease); only the attempts whose job row was updated get
#: their attempt row, except a success (``ON_JOB_ROW``). The job row takes the attempt's
#: start (when its child started it; the claim's time stays when that is unknown).
_FINISH_POSTGRESQL = sa.text(
    f"""
WITH v AS (
    SELECT * FROM unnest(
        {", ".join(_ending_column(name, kind) for name, kind in _ENDING_COLUMNS)}
    ) AS v({", ".join(name for name, _ in _ENDING_COLUMNS)})
),
done AS (
    UPDATE corequeue_jobs AS j
    SET state = v.state, attempts = v.attempts, max_attempts = v.max_attempts,
        lease = v.new_lease, run_at = {_at("v.run_at")},
        finished_at = {_at("v.finished_at")},
        started_at = COALESCE({_at("v.started_at")}, j.started_at),
        result = v.result, error = v.error
    FROM v
    WHERE j.id = v.id AND j.lease = v.lease AND j.state = 'running'
    RETURNING j.id, v.lease
),
recorded AS (
    INSERT INTO corequeue_attempts (job_id, attempt, outcome, lease, worker_id, started_at,
                                    finished_at, error_type, error_message, traceback)
    SELECT v.id, v.number, v.outcome, v.lease, v.worker_id,
           {_at("v.started_at")},
           {_at("v.ended_at")},
           v.error_type, v.error_message, v.traceback
    FROM v JOIN done ON done.id = v.id AND done.lease = v.lease
    WHERE v.outcome <> '{ON_JOB_ROW.value}'
)
SELECT id FROM done
"""
)

#: Store.leases_gone_statement.
_LEASES_GONE = sa.text(
    "SELECT i FROM unnest(CAST(:ids AS bigint[])) AS i"
    " WHERE (SELECT j.lease FROM corequeue_jobs AS j WHERE j.id = i) IS DISTINCT FROM :lease"
)

#: The column type's conversions, for the statements the driver runs (Store._driver_run).
_UTC = schema.UTCDateTime()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(when: datetime | None) -> int | None:
    """``when`` as whole microseconds since the epoch (exact, unlike a float timestamp)."""
    return None if when is None else (when - _EPOCH) // _MICROSECOND


_RESCUE_COLUMNS = [
    jobs.c.id,
    jobs.c.name,
    jobs.c.lease,
    jobs.c.worker_id,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.run_at,
    jobs.c.started_at,
]


class _ArrayOf(ColumnElement[Any]):
    """PostgreSQL's ``ARRAY(SELECT ...)``: the claim's subquery, evaluated once."""

    inherit_cache = True
    _traverse_internals = [("select", InternalTraversal.dp_clauseelement)]

    def __init__(self, select: sa.Select[Any]) -> None:
        self.select = select


@compiles(_ArrayOf)
def _compile_array_of(element: _ArrayOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"ARRAY({compiler.process(element.select, **kw)})"


ConnectionLike = Connection | Session


class _Compiled(NamedTuple):
    """A statement compiled once for the driver (:meth:`Store._driver_run`)."""

    sql: str
    defaults: dict[str, Any]  # its parameters' default values
    times: tuple[str, ...]  # its UTCDateTime parameters: bound as the column type binds them


#: (job id, lease expected, change to apply, extra columns) for ``Store._apply_changes``.
_Write = tuple[int, str | None, lifecycle.Change, dict[str, Any]]


class Store:
    """corequeue's tables in one database, reached through a SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self.url: URL = engine.url
        self._claim_statements: dict[tuple[str, ...], sa.Update] = {}
        self._driver_claims: dict[tuple[str, ...], _Compiled] = {}
        self._driver_inserts: dict[tuple[str, ...], _Compiled] = {}

    @classmethod
    def from_url(cls, url: str | URL, **engine_kwargs: Any) -> Store:
        return cls(create_engine(url, **engine_kwargs))

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def dispose(self) -> None:
        self.engine.dispose()

    def _begin(self) -> Any:
        return self.engine.begin()

    def _autocommit(self) -> Connection:
        """A connection whose statements each commit by themselves: one round trip for a
        statement that is atomic alone (no BEGIN and COMMIT round trips around it)."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _atomic(self) -> Any:
        """A connection for one statement that is atomic by itself: autocommit on PostgreSQL
        (one round trip), a write transaction on SQLite."""
        return self._autocommit() if self.is_postgresql else self._begin()

    def read(self) -> Connection:
        """A connection for reads only (use it as a context manager). On SQLite its
        transactions are deferred, so a read never waits behind a writer; write through
        ``engine.begin()``, which takes the write lock up front."""
        return self.engine.connect().execution_options(**{READ_ONLY: True})

    def _errors(self) -> Any:
        return translate_errors(self.url)

    # -- schema -----------------------------------------------------------------------------

    def schema_version(self) -> int | None:
        """The schema version recorded in the database, or None when there are no tables."""
        with self._errors(), self.read() as conn:
            if not sa.inspect(conn).has_table(meta.name):
                return None
            value = conn.execute(
                sa.select(meta.c.value).where(meta.c.key == "schema_version")
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
            raise SchemaError(
                f"the corequeue tables in {where} are at schema version {found}, newer than this "
                f"corequeue understands ({schema.SCHEMA_VERSION}): upgrade corequeue"
            )
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
        from corequeue.store.migration import upgrade

        with self._errors(), self._begin() as conn:
            if self.is_postgresql:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x636F7265)))
            return upgrade(conn)

    # -- enqueue ----------------------------------------------------------------------------

    def job_insert_many(
        self, new_jobs: Sequence[NewJob], *, now: datetime, connection: ConnectionLike | None = None
    ) -> list[Inserted]:
        """Insert jobs; with ``connection``, inside the caller's transaction (not committed here).

        A job whose unique key is held by a waiting or running job of the same name is not
        inserted: its entry names the existing job instead.
        """
        if not new_jobs:
            return []
        with self._errors():
            if connection is None and len(new_jobs) == 1 and self.is_postgresql:
                if not new_jobs[0].unique_key and self._driver is not None:
                    return [self._driver_insert(_new_row(new_jobs[0], now))]
                # One job is one statement, atomic by itself: no BEGIN and COMMIT round trips.
                with self._autocommit() as conn:
                    return self._insert(conn, new_jobs, now)
            if connection is None:
                with self._begin() as conn:
                    return self._insert(conn, new_jobs, now)
            conn = connection.connection() if isinstance(connection, Session) else connection
            return self._insert(conn, new_jobs, now)

    def _insert(
        self, conn: Connection, new_jobs: Sequence[NewJob], now: datetime
    ) -> list[Inserted]:
        # Ids follow the input order (insertion order breaks priority ties): runs of plain jobs
        # go in one multi-row INSERT each, unique jobs one by one between them.
        out: list[Inserted] = []
        plain: list[dict[str, Any]] = []
        for job in new_jobs:
            row = _new_row(job, now)
            if not job.unique_key:
                plain.append(row)
                continue
            out.extend(self._insert_plain(conn, plain))
            plain = []
            out.append(self._insert_unique(conn, row))
        out.extend(self._insert_plain(conn, plain))
        return out

    def _returning(self) -> list[ColumnElement[Any]]:
        # PostgreSQL: each inserted row also NOTIFYs its queue, in the same statement
        # (delivered at commit; duplicates within a transaction are sent once).
        if self.is_postgresql:
            return [jobs.c.id, sa.func.pg_notify(NOTIFY_CHANNEL, jobs.c.queue)]
        return [jobs.c.id]

    @functools.cached_property
    def _insert_one(self) -> sa.Insert:
        """The one-row INSERT, built once (through SQLAlchemy and through the driver)."""
        return sa.insert(jobs).returning(*self._returning())

    @functools.cached_property
    def _driver(self) -> Callable[[str, dict[str, Any]], list[tuple[Any, ...]]] | None:
        """Run one compiled statement on a psycopg connection in autocommit, and return its
        rows: for the statements on the hot paths that are atomic alone (one job's INSERT, the
        worker's claim and its batches of endings). SQLAlchemy's execution path costs as much
        as such a statement (several driver calls to switch autocommit on and off, result
        set-up): ~0.5 ms here, against ~0.2 ms for the statement. The connection is the
        process's kept one (:class:`~corequeue.store.engine.KeptConnection`), or a pooled one
        while another thread has that. Errors are wrapped as SQLAlchemy would, and a dead
        connection is dropped. Statement events (``before_cursor_execute``) do not fire for
        these statements. None when the driver is not psycopg."""
        dialect = self.engine.dialect
        if dialect.name != "postgresql" or dialect.driver not in ("psycopg", "psycopg2"):
            return None
        dbapi_error = dialect.loaded_dbapi.Error
        engine = self.engine
        kept = KeptConnection(engine)

        def wrapped(e: Exception, sql: str | None, params: Any, lost: bool) -> Exception:
            return sa.exc.DBAPIError.instance(
                sql, params, e, dbapi_error, connection_invalidated=lost, dialect=dialect
            )

        def lost(e: Any, conn: Any) -> bool:
            return bool(conn.closed) or bool(dialect.is_disconnect(e, conn, None))

        def rows_of(conn: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            cursor.close()
            return rows

        def execute(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
            try:
                conn = kept.take(engine)
                pooled = engine.raw_connection() if conn is None else None
            except dbapi_error as e:  # neither the pool nor take() wraps a failed connect
                raise wrapped(e, None, None, True) from e
            if pooled is None:
                broken = False
                try:
                    return rows_of(conn, sql, params)
                except dbapi_error as e:
                    broken = lost(e, conn)
                    raise wrapped(e, sql, params, broken) from e
                finally:
                    kept.give_back(broken=broken)
            try:
                dbapi_conn: Any = pooled.driver_connection
                try:
                    dbapi_conn.autocommit = True
                    try:
                        return rows_of(dbapi_conn, sql, params)
                    finally:  # back in the pool, the connection runs transactions again
                        if not dbapi_conn.closed:
                            dbapi_conn.autocommit = False
                except dbapi_error as e:
                    dead = lost(e, dbapi_conn)
                    if dead:
                        pooled.invalidate(e)
                    raise wrapped(e, sql, params, dead) from e
            finally:
                pooled.close()

        return execute

    def _compiled(
        self, stmt: sa.Insert | sa.Update | sa.TextClause, keys: Sequence[str] | None = None
    ) -> _Compiled:
        """``stmt`` rendered once for the driver (``keys``: an INSERT's columns)."""
        done = stmt.compile(
            dialect=self.engine.dialect,
            column_keys=list(keys) if keys is not None else None,
            compile_kwargs={"render_postcompile": True},
        )
        times = tuple(
            name for name, bind in done.binds.items() if isinstance(bind.type, schema.UTCDateTime)
        )
        return _Compiled(str(done), dict(done.params), times)

    def _driver_run(self, compiled: _Compiled, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a statement compiled by :meth:`_compiled` through :attr:`_driver`."""
        assert self._driver is not None
        values = compiled.defaults | params
        utc, dialect = _UTC, self.engine.dialect
        for name in compiled.times:
            values[name] = utc.process_bind_param(values[name], dialect)
        return self._driver(compiled.sql, values)

    def _driver_insert(self, row: dict[str, Any]) -> Inserted:
        """One plain job on PostgreSQL, outside any caller's transaction, through the driver
        (:attr:`_driver`): the same INSERT as ``_insert_plain``, compiled once per set of
        columns. ``run_in_worker()`` should cost about one INSERT."""
        keys = tuple(row)
        compiled = self._driver_inserts.get(keys)
        if compiled is None:
            compiled = self._driver_inserts[keys] = self._compiled(self._insert_one, keys)
        return Inserted(self._driver_run(compiled, row)[0][0], True)

    def _insert_plain(self, conn: Connection, rows: list[dict[str, Any]]) -> list[Inserted]:
        if not rows:
            return []
        if len(rows) == 1:
            # One row: a plain execute of a statement built once (executemany's machinery
            # for ordered RETURNING, and rebuilding the statement, cost more than the INSERT).
            job_id = conn.execute(self._insert_one, rows[0]).scalar_one()
            return [Inserted(job_id, True)]
        result = conn.execute(
            sa.insert(jobs).returning(*self._returning(), sort_by_parameter_order=True), rows
        )
        return [Inserted(job_id, True) for job_id in result.scalars()]

    def _insert_unique(self, conn: Connection, row: dict[str, Any]) -> Inserted:
        # Literal SQL, not bound parameters: PostgreSQL matches this WHERE to the partial unique
        # index when planning, and a generic plan (psycopg prepares a statement after 5 runs on
        # a connection) with $n parameters in it matches no index and the INSERT fails.
        active = ", ".join(f"'{s.value}'" for s in ACTIVE_STATES)
        held = sa.text(f"unique_key <> '' AND state IN ({active})")
        target: dict[str, Any] = {
            "index_elements": [jobs.c.name, jobs.c.unique_key],
            "index_where": held,
        }
        stmt: sa.Insert
        if self.is_postgresql:
            stmt = postgresql.insert(jobs).values(row).on_conflict_do_nothing(**target)
        else:
            stmt = sqlite.insert(jobs).values(row).on_conflict_do_nothing(**target)
        stmt = stmt.returning(*self._returning())
        existing_query = sa.select(jobs.c.id).where(
            jobs.c.name == row["name"], jobs.c.unique_key == row["unique_key"], held
        )
        # The holder may finish between our conflict and our look-up: then insert again.
        for _ in range(10):
            job_id = conn.execute(stmt).scalar()
            if job_id is not None:
                return Inserted(job_id, True)
            existing = conn.execute(existing_query).scalar()
            if existing is not None:
                return Inserted(existing, False)
        raise InvalidTransition(f"could not enqueue unique job {row['unique_key']!r}: contention")

    # -- claim and finish -------------------------------------------------------------------

    def job_claim_many(
        self, *, queues: Sequence[str], limit: int, lease: str, worker_id: str, now: datetime
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` ready jobs: highest priority, then earliest run_at, then oldest.

        Each claim starts an attempt (``attempts + 1``), as ``lifecycle.claim`` decides.
        """
        if limit <= 0:
            return []
        key = tuple(queues)
        stmt = self._claim_statement(key)
        params = {"c_limit": limit, "c_lease": lease, "c_worker": worker_id, "c_now": now}
        # The RETURNING columns are ClaimedJob's first fields, in order (positional: reading a
        # row's fields by name costs more than the rest of the claim's Python work).
        make: Any = ClaimedJob  # rows are typed Row[Any]: mypy cannot count their fields
        with self._errors():
            if self._driver is not None:
                claimed: list[ClaimedJob] = [
                    make(*r, lease, now) for r in self._driver_claim(key, params)
                ]
                dialect = self.engine.dialect
                for job in claimed:  # as the column type converts it
                    job.run_at = _UTC.process_result_value(job.run_at, dialect)  # type: ignore[assignment]
            else:
                # One statement, atomic by itself: in autocommit on PostgreSQL (no BEGIN and
                # COMMIT round trips), a write transaction on SQLite.
                with self._atomic() as conn:
                    claimed = [make(*r, lease, now) for r in conn.execute(stmt, params)]
        claimed.sort(key=lambda j: (-j.priority, j.run_at, j.id))
        return claimed

    def _claim_statement(self, queues: tuple[str, ...]) -> sa.Update:
        stmt = self._claim_statements.get(queues)
        if stmt is None:
            # Built once per queue list with bound parameters: the worker's hot path neither
            # rebuilds nor recompiles it. Their placeholder values (None) let the driver's copy
            # render the queue list inline; each claim gives all four.
            stmt = self.claim_statement(
                queues=queues,
                limit=sa.bindparam("c_limit", None, type_=sa.Integer),
                lease=sa.bindparam("c_lease", None, type_=sa.String),
                worker_id=sa.bindparam("c_worker", None, type_=sa.String),
                now=sa.bindparam("c_now", None, type_=schema.UTCDateTime),
            )
            self._claim_statements[queues] = stmt
        return stmt

    def _driver_claim(
        self, queues: tuple[str, ...], params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """The claim's rows through the driver (:attr:`_driver`), on PostgreSQL: an idle
        worker's pick-up latency is mostly this statement's round trip."""
        compiled = self._driver_claims.get(queues)
        if compiled is None:
            compiled = self._compiled(self._claim_statement(queues))
            self._driver_claims[queues] = compiled
        return self._driver_run(compiled, params)

    def claim_statement(
        self, *, queues: Sequence[str], limit: Any, lease: Any, worker_id: Any, now: Any
    ) -> sa.Update:
        """The UPDATE that :meth:`job_claim_many` runs (tests EXPLAIN it).

        It walks the partial index ``ix_corequeue_jobs_ready`` in claim order. On PostgreSQL
        the ids are picked by ``id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED))``, which keeps
        that plan however many finished rows pile up (``IN (subquery)`` can turn into a hash
        semi-join over the whole table).
        """
        ready = sa.select(jobs.c.id).where(jobs.c.state == JobState.REQUESTED.value)
        ready = ready.where(jobs.c.run_at <= now)
        if queues:
            ready = ready.where(jobs.c.queue.in_(list(queues)))
        ready = ready.order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id).limit(limit)
        if self.is_postgresql:
            picked = jobs.c.id == sa.any_(_ArrayOf(ready.with_for_update(skip_locked=True)))
        else:
            picked = jobs.c.id.in_(ready.scalar_subquery())
        # lifecycle.claim's decision, as one statement: one more attempt, under the new lease.
        return (
            sa.update(jobs)
            # No second "state = 'requested'" here: the rows were picked and locked in this
            # statement (SKIP LOCKED on PostgreSQL; SQLite writers are serialized), so their
            # state cannot change before the UPDATE; and that condition would match the
            # partial index's predicate and make the planner walk the whole ready index
            # (filtering on id) instead of fetching the picked ids by primary key.
            .where(picked)
            .values(
                state=JobState.RUNNING.value,
                lease=lease,
                worker_id=worker_id,
                started_at=now,
                attempts=jobs.c.attempts + 1,
            )
            .returning(*_CLAIM_COLUMNS)
        )

    def job_finish_many(self, ends: Sequence[AttemptEnd]) -> list[int]:
        """Persist attempt endings. Returns the ids whose change was applied; an ending whose
        job is no longer running under its lease (rescued, cancelled) is refused."""
        if not ends:
            return []
        # One ending per attempt: a duplicate in the batch is refused like a late one.
        unique: list[AttemptEnd] = []
        seen: set[tuple[int, str]] = set()
        for e in ends:
            if (e.job_id, e.lease) not in seen:
                seen.add((e.job_id, e.lease))
                unique.append(e)
        with self._errors():
            if self.is_postgresql:
                # One statement for the whole batch, atomic by itself.
                params = _ending_params(unique)
                if self._driver is not None:
                    return [r[0] for r in self._driver_run(self._driver_finish, params)]
                with self._atomic() as conn:
                    return list(conn.execute(_FINISH_POSTGRESQL, params).scalars())
            with self._begin() as conn:
                return self._finish_sqlite(conn, unique)

    def _finish_sqlite(self, conn: Connection, ends: Sequence[AttemptEnd]) -> list[int]:
        held = self._leases_held(conn, [(e.job_id, e.lease) for e in ends], lock=True)
        applied = [e for e in ends if (e.job_id, e.lease) in held]
        self._apply_changes(
            conn,
            [
                (
                    e.job_id,
                    e.lease,
                    e.change,
                    {"result": e.result, "error": _error_line(e), "started_at": e.started_at},
                )
                for e in applied
            ],
        )
        rows = [_attempt_row(e) for e in applied if e.outcome is not ON_JOB_ROW]
        if rows:
            conn.execute(sa.insert(attempts), rows)
        return [e.job_id for e in applied]

    @functools.cached_property
    def _driver_finish(self) -> _Compiled:
        return self._compiled(_FINISH_POSTGRESQL)

    def job_release_many(self, claimed: Sequence[ClaimedJob], *, now: datetime) -> list[int]:
        """Give back claimed jobs that never started: waiting again, attempt not counted."""
        if not claimed:
            return []
        with self._errors(), self._begin() as conn:
            held = self._leases_held(conn, [(j.id, j.lease) for j in claimed], lock=True)
            changes: list[_Write] = [
                (j.id, j.lease, lifecycle.release(j.snapshot(), lease=j.lease, now=now), {})
                for j in claimed
                if (j.id, j.lease) in held
            ]
            self._apply_changes(conn, changes)
        return [c[0] for c in changes]

    def job_leases_gone_many(self, pairs: Sequence[tuple[int, str]]) -> set[int]:
        """The ids of the (job id, lease) pairs whose job no longer runs under that lease
        (finished, cancelled, rescued, deleted): usually none of them.

        The worker asks this about every job handed to its children, twice a second. On
        PostgreSQL only the gone ids come back, one statement per lease (a claim's jobs share
        one): thousands of queued jobs cost thousands of primary-key probes in the database,
        not thousands of rows to read."""
        if not pairs:
            return set()
        with self._errors(), self.read() as conn:
            if not self.is_postgresql:
                held = self._leases_held(conn, pairs, lock=False)
                return {p[0] for p in pairs if p not in held}
            by_lease: dict[str, list[int]] = {}
            for job_id, lease in pairs:
                by_lease.setdefault(lease, []).append(job_id)
            gone: set[int] = set()
            for lease, ids in by_lease.items():
                gone.update(conn.execute(self.leases_gone_statement(ids, lease)).scalars())
            return gone

    def leases_gone_statement(self, ids: Sequence[int], lease: str) -> sa.TextClause:
        """Which of ``ids`` no longer run under ``lease``, on PostgreSQL (tests EXPLAIN it):
        each id's lease looked up by primary key (a lease is held exactly while the job
        runs: see :meth:`leases_statement`), the ids as one array literal. A sub-select per id,
        not NOT EXISTS: the planner turns that into an anti-join, which it ran as a hash join
        over a scan of the whole table (it cannot know how few rows hold the lease)."""
        array = "{" + ",".join(map(str, ids)) + "}"
        return _LEASES_GONE.bindparams(ids=array, lease=lease)

    def _leases_held(
        self, conn: Connection, pairs: Sequence[tuple[int, str]], *, lock: bool
    ) -> set[tuple[int, str]]:
        query = self.leases_statement([p[0] for p in pairs], lock=lock)
        found = {(r.id, r.lease) for r in conn.execute(query)}
        return {p for p in pairs if p in found}

    def leases_statement(self, ids: Sequence[int], *, lock: bool = False) -> sa.Select[Any]:
        """The leases of these jobs (tests EXPLAIN it).

        By primary key alone: a job holds a lease exactly while it is running (the
        ck_corequeue_jobs_lease_iff_running constraint), so a matching lease is the state
        check. "state = 'running'" in the WHERE would let the planner pick the partial index
        of running jobs in a bitmap scan, which visits every dead entry in it (bitmap scans
        never mark them dead): after 100,000 jobs, 100,000 heap visits for each check."""
        if self.is_postgresql:  # one array parameter: no IN list of thousands to render
            array = sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.BigInteger))
            query = sa.select(jobs.c.id, jobs.c.lease).where(jobs.c.id == sa.any_(array))
            return query.with_for_update() if lock else query
        return sa.select(jobs.c.id, jobs.c.lease).where(jobs.c.id.in_(list(ids)))

    def _apply_changes(
        self,
        conn: Connection,
        changes: Sequence[_Write],
        *,
        expected: JobState = JobState.RUNNING,
    ) -> None:
        if not changes:
            return
        stmt = (
            sa.update(jobs)
            .where(
                jobs.c.id == sa.bindparam("b_id"),
                jobs.c.state == expected.value,
                _lease_matches(),
            )
            .values(
                state=sa.bindparam("b_state"),
                attempts=sa.bindparam("b_attempts"),
                max_attempts=sa.bindparam("b_max_attempts"),
                lease=sa.bindparam("b_lease_new"),
                run_at=sa.bindparam("b_run_at", type_=schema.UTCDateTime),
                finished_at=sa.bindparam("b_finished_at", type_=schema.UTCDateTime),
                started_at=sa.func.coalesce(
                    sa.bindparam("b_started_at", type_=schema.UTCDateTime), jobs.c.started_at
                ),
                result=sa.bindparam("b_result"),
                error=sa.bindparam("b_error"),
            )
        )
        params = []
        for job_id, lease, change, extra in changes:
            params.append(
                {
                    "b_id": job_id,
                    "b_lease": lease,
                    "b_state": change.state.value,
                    "b_attempts": change.attempts,
                    "b_max_attempts": change.max_attempts,
                    "b_lease_new": change.lease,
                    "b_run_at": change.run_at,
                    "b_finished_at": change.finished_at,
                    "b_started_at": extra.get("started_at"),
                    "b_result": extra.get("result"),
                    "b_error": extra.get("error"),
                }
            )
        conn.execute(stmt, params)

    # -- single-job actions (people, the dashboard) --------------------------------------------

    def job_get(self, job_id: int) -> JobRecord | None:
        with self._errors(), self.read() as conn:
            row = conn.execute(sa.select(*_JOB_COLUMNS).where(jobs.c.id == job_id)).first()
        return _job_record(row) if row is not None else None

    def job_cancel(self, job_id: int, *, now: datetime) -> JobRecord:
        """Cancel a waiting job, or a running one (its worker stops the child). Raises
        InvalidTransition for a finished job, KeyError for an unknown id."""
        return self._act(job_id, now, lambda snap: lifecycle.cancel(snap, now=now))

    def job_retry(self, job_id: int, *, now: datetime) -> JobRecord:
        """Send a failed or cancelled job back to wait, to run now, with one more attempt."""
        return self._act(job_id, now, lambda snap: lifecycle.retry(snap, now=now))

    def _act(
        self,
        job_id: int,
        now: datetime,
        decide: Callable[[lifecycle.JobSnapshot], lifecycle.Change],
    ) -> JobRecord:
        with self._errors():
            for _ in range(10):
                job = self.job_get(job_id)
                if job is None:
                    raise KeyError(f"no job with id {job_id}")
                change = decide(job.snapshot())
                with self._begin() as conn:
                    try:
                        done = self._act_write(conn, job, change, now)
                    except sa.exc.IntegrityError as exc:
                        if "unique" not in str(exc.orig).lower():
                            raise
                        raise UniqueViolation(
                            f"job {job_id} cannot wait again: another {job.name} job with unique "
                            f"key {job.unique_key!r} is already waiting or running; cancel that "
                            "one first or let it finish"
                        ) from None
                if done:
                    after = self.job_get(job_id)
                    assert after is not None
                    return after
        raise InvalidTransition(f"job {job_id} kept changing state; try again")

    def _act_write(
        self, conn: Connection, job: JobRecord, change: lifecycle.Change, now: datetime
    ) -> bool:
        """Apply ``change`` if ``job`` is still as read (state, lease and attempts)."""
        done = conn.execute(
            sa.update(jobs)
            .where(
                jobs.c.id == job.id,
                jobs.c.state == job.state.value,
                jobs.c.attempts == job.attempts,
                jobs.c.lease.is_(None) if job.lease is None else jobs.c.lease == job.lease,
            )
            .values(
                state=change.state.value,
                attempts=change.attempts,
                max_attempts=change.max_attempts,
                lease=change.lease,
                run_at=change.run_at,
                finished_at=change.finished_at,
                **({"result": None} if change.state is JobState.REQUESTED else {}),
            )
        ).rowcount
        if not done:
            return False
        if job.state is JobState.RUNNING and job.lease is not None:
            # The running attempt ends here; its worker's late result will be refused.
            end = AttemptEnd(
                job_id=job.id,
                lease=job.lease,
                attempt=job.attempts,
                outcome=Outcome.CANCELLED,
                change=change,
                worker_id=job.worker_id,
                started_at=job.started_at,
                finished_at=now,
                error_type="Cancelled",
                error_message="cancelled by request while running",
            )
            conn.execute(sa.insert(attempts).values(_attempt_row(end)))
        if self.is_postgresql and change.state is JobState.REQUESTED:
            conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, job.queue)))
        return True

    def job_delete(self, job_id: int) -> bool:
        """Delete a job that is not running (cancel a running one first). Returns whether a
        job was deleted."""
        with self._errors(), self._begin() as conn:
            found = conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
            if found == JobState.RUNNING.value:
                raise InvalidTransition(f"job {job_id} is running: cancel it before deleting it")
            return bool(
                conn.execute(
                    sa.delete(jobs).where(
                        jobs.c.id == job_id, jobs.c.state != JobState.RUNNING.value
                    )
                ).rowcount
            )

    # -- reading ------------------------------------------------------------------------------

    def job_list(
        self, filter: JobFilter | None = None, *, limit: int = 50, before_id: int | None = None
    ) -> list[JobRecord]:
        """Jobs matching ``filter``, newest first; pass the last id seen as ``before_id`` for
        the next page (keyset pagination)."""
        query = sa.select(*_JOB_COLUMNS).order_by(jobs.c.id.desc()).limit(limit)
        query = query.where(*_filter_clauses(filter or JobFilter()))
        if before_id is not None:
            query = query.where(jobs.c.id < before_id)
        with self._errors(), self.read() as conn:
            return [_job_record(r) for r in conn.execute(query)]

    def attempt_list(self, job_id: int) -> list[AttemptRecord]:
        """A job's attempts, first to last: its attempt rows, then the attempt its job row
        keeps when it succeeded (``ON_JOB_ROW``: that one has no row of its own)."""
        query = sa.select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.id)
        kept = sa.select(
            jobs.c.id, jobs.c.attempts, jobs.c.worker_id, jobs.c.started_at, jobs.c.finished_at
        ).where(jobs.c.id == job_id, jobs.c.state == ON_JOB_ROW_STATE.value)
        with self._errors(), self.read() as conn:
            found = [
                AttemptRecord(
                    id=r.id,
                    job_id=r.job_id,
                    attempt=r.attempt,
                    outcome=Outcome(r.outcome),
                    lease=r.lease,
                    worker_id=r.worker_id,
                    started_at=r.started_at,
                    finished_at=r.finished_at,
                    error_type=r.error_type,
                    error_message=r.error_message,
                    traceback=r.traceback,
                )
                for r in conn.execute(query)
            ]
            job = conn.execute(kept).first()
        # (A database written before attempts were kept on the job row has a row for it.)
        if job is not None and not any(a.outcome is ON_JOB_ROW for a in found):
            assert job.finished_at is not None
            found.append(
                AttemptRecord(
                    id=None,
                    job_id=job.id,
                    attempt=job.attempts,
                    outcome=ON_JOB_ROW,
                    lease=None,
                    worker_id=job.worker_id,
                    started_at=job.started_at,
                    finished_at=job.finished_at,
                    error_type=None,
                    error_message=None,
                    traceback=None,
                )
            )
        return found

    def job_next_run_at(self, queues: Sequence[str]) -> datetime | None:
        """When the earliest waiting job becomes ready (None when nothing waits)."""
        query = sa.select(sa.func.min(jobs.c.run_at)).where(
            jobs.c.state == JobState.REQUESTED.value
        )
        if queues:
            query = query.where(jobs.c.queue.in_(list(queues)))
        with self._errors(), self._autocommit() if self.is_postgresql else self.read() as conn:
            value = conn.execute(query).scalar()
        if value is None:
            return None
        return schema.UTCDateTime().process_result_value(value, self.engine.dialect)

    def job_count_many(self) -> list[tuple[str, JobState, int]]:
        """(queue, state, count) for every queue and state that has jobs."""
        query = (
            sa.select(jobs.c.queue, jobs.c.state, sa.func.count())
            .group_by(jobs.c.queue, jobs.c.state)
            .order_by(jobs.c.queue, jobs.c.state)
        )
        with self._errors(), self.read() as conn:
            return [(q, JobState(s), int(n)) for q, s, n in conn.execute(query)]

    def job_prune_many(self, *, finished_before: datetime, batch: int = 5000) -> int:
        """Delete finished jobs (and their attempts) older than ``finished_before``, in
        batches. Returns how many were deleted."""
        total = 0
        while True:
            old = (
                sa.select(jobs.c.id)
                .where(
                    jobs.c.finished_at.is_not(None),
                    jobs.c.finished_at < finished_before,
                    jobs.c.state.in_([s.value for s in FINAL_STATES]),
                )
                .limit(batch)
            )
            with self._errors(), self._begin() as conn:
                ids = list(conn.execute(old).scalars())
                if ids:
                    conn.execute(sa.delete(attempts).where(attempts.c.job_id.in_(ids)))
                    conn.execute(sa.delete(jobs).where(jobs.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                return total

    # -- workers and rescue ---------------------------------------------------------------------

    def worker_beat(self, worker: WorkerRecord) -> None:
        """Record that ``worker`` is alive (inserting its row when missing)."""
        values = {
            "host": worker.host,
            "pid": worker.pid,
            "queues": json.dumps(worker.queues),
            "started_at": worker.started_at,
            "last_beat_at": worker.last_beat_at,
            "stats": json.dumps(worker.stats),
        }
        with self._errors(), self._begin() as conn:
            updated = conn.execute(
                sa.update(workers).where(workers.c.id == worker.id).values(values)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(workers).values(id=worker.id, **values))

    def worker_delete(self, worker_id: str) -> None:
        with self._errors(), self._begin() as conn:
            conn.execute(sa.delete(workers).where(workers.c.id == worker_id))

    def worker_list(self) -> list[WorkerRecord]:
        with self._errors(), self.read() as conn:
            rows = conn.execute(sa.select(workers).order_by(workers.c.started_at)).all()
        return [
            WorkerRecord(
                id=r.id,
                host=r.host,
                pid=r.pid,
                queues=json.loads(r.queues),
                started_at=r.started_at,
                last_beat_at=r.last_beat_at,
                stats=json.loads(r.stats or "{}"),
            )
            for r in rows
        ]

    def job_rescue_many(
        self,
        *,
        now: datetime,
        heartbeat_timeout: float,
        retry_delay: Callable[[str, int], float],
        limit: int = 1000,
        rescuer: str | None = None,
    ) -> list[AttemptEnd]:
        """Find running jobs whose worker stopped heartbeating (or is gone), record those
        attempts ``lost`` and retry or fail them. Returns what was recorded.

        ``retry_delay(job name, attempt)`` gives the wait before the retry. Rows are locked
        with SKIP LOCKED on PostgreSQL, so two rescuers never record the same attempt.
        ``rescuer``, the worker asking, is alive whatever its heartbeat row says (after an
        outage this statement may get through before its heartbeat does): neither its jobs
        nor its row are touched.
        """
        expired_before = now - timedelta(seconds=heartbeat_timeout)
        query = self.rescue_statement(expired_before=expired_before, limit=limit, rescuer=rescuer)
        why = f"stopped heartbeating for more than {heartbeat_timeout:g}s while running this job"
        gone: ColumnElement[bool] = workers.c.last_beat_at < expired_before
        if rescuer is not None:
            gone = sa.and_(gone, workers.c.id != rescuer)
        with self._errors(), self._begin() as conn:
            rows = sorted(conn.execute(query).all(), key=lambda r: r.id)
            ends = self._record_lost(conn, rows, now=now, retry_delay=retry_delay, why=why)
            conn.execute(sa.delete(workers).where(gone))
        return ends

    def rescue_statement(
        self, *, expired_before: datetime, limit: int, rescuer: str | None = None
    ) -> sa.Select[Any]:
        """The running jobs of workers silent since ``expired_before``, but ``rescuer``'s
        (tests EXPLAIN it).

        No ORDER BY: under the worker's planner settings (no sort) it would walk the primary
        key over the whole table, finished history included, on every heartbeat. Unordered,
        it is an index scan of the small partial index of running jobs."""
        alive = sa.select(workers.c.id).where(workers.c.last_beat_at >= expired_before)
        silent: ColumnElement[bool] = jobs.c.worker_id.not_in(alive)
        if rescuer is not None:
            silent = sa.and_(silent, jobs.c.worker_id != rescuer)
        query = (
            sa.select(*_RESCUE_COLUMNS)
            .where(
                jobs.c.state == JobState.RUNNING.value,
                sa.or_(jobs.c.worker_id.is_(None), silent),
                jobs.c.started_at < expired_before,
            )
            .limit(limit)
        )
        if self.is_postgresql:
            query = query.with_for_update(skip_locked=True, of=jobs)
        return query

    def job_orphan_rescue_many(
        self,
        *,
        worker_id: str,
        held: set[tuple[int, str]],
        now: datetime,
        retry_delay: Callable[[str, int], float],
    ) -> list[AttemptEnd]:
        """Record ``lost`` the jobs the database says ``worker_id`` runs but that it does not
        hold (``held``: its (id, lease) pairs): an attempt whose result was committed
        asynchronously and forgotten by a database crash, say. Returns what was recorded."""
        query = sa.select(*_RESCUE_COLUMNS).where(
            jobs.c.state == JobState.RUNNING.value, jobs.c.worker_id == worker_id
        )
        if self.is_postgresql:
            query = query.with_for_update(skip_locked=True)
        with self._errors(), self._begin() as conn:
            rows = [r for r in conn.execute(query).all() if (r.id, r.lease) not in held]
            return self._record_lost(
                conn,
                rows,
                now=now,
                retry_delay=retry_delay,
                why="no longer held this attempt (its result was never recorded)",
            )

    def _record_lost(
        self,
        conn: Connection,
        rows: Sequence[Any],
        *,
        now: datetime,
        retry_delay: Callable[[str, int], float],
        why: str,
    ) -> list[AttemptEnd]:
        ends = []
        for r in rows:
            snap = lifecycle.JobSnapshot(
                JobState.RUNNING, r.attempts, r.max_attempts, r.lease, r.run_at
            )
            change = lifecycle.finish(
                snap,
                Outcome.LOST,
                lease=r.lease,
                now=now,
                retry_delay=retry_delay(r.name, r.attempts),
            )
            ends.append(
                AttemptEnd(
                    job_id=r.id,
                    lease=r.lease,
                    attempt=r.attempts,
                    outcome=Outcome.LOST,
                    change=change,
                    worker_id=r.worker_id,
                    started_at=r.started_at,
                    finished_at=now,
                    error_type="WorkerLost",
                    error_message=f"worker {r.worker_id} {why}",
                )
            )
        self._apply_changes(
            conn, [(e.job_id, e.lease, e.change, {"error": _error_line(e)}) for e in ends]
        )
        if ends:
            conn.execute(sa.insert(attempts), [_attempt_row(e) for e in ends])
            if self.is_postgresql:
                conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))
        return ends


def _lease_matches() -> ColumnElement[bool]:
    return jobs.c.lease == sa.bindparam("b_lease")


def _new_row(job: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "name": job.name,
        "queue": job.queue,
        "priority": job.priority,
        "state": JobState.REQUESTED.value,
        "params": job.params,
        "run_at": job.run_at,
        "created_at": now,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "unique_key": job.unique_key,
        "source": job.source[:500],
    }


def _error_line(end: AttemptEnd) -> str | None:
    if end.outcome is Outcome.SUCCEEDED:
        return None
    if end.error_type is None and end.error_message is None:
        return end.outcome.value
    return f"{end.error_type or end.outcome.value}: {end.error_message or ''}".rstrip(": ")


def _attempt_row(end: AttemptEnd) -> dict[str, Any]:
    return {
        "job_id": end.job_id,
        "attempt": end.attempt,
        "outcome": end.outcome.value,
        "lease": end.lease,
        "worker_id": end.worker_id,
        "started_at": end.started_at,
        "finished_at": end.finished_at,
        "error_type": end.error_type,
        "error_message": end.error_message,
        "traceback": end.traceback,
    }


def _job_record(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        name=row.name,
        queue=row.queue,
        priority=row.priority,
        state=JobState(row.state),
        params=row.params,
        run_at=row.run_at,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        timeout=row.timeout,
        unique_key=row.unique_key,
        lease=row.lease,
        worker_id=row.worker_id,
        result=row.result,
        error=row.error,
        source=row.source,
    )


def _filter_clauses(f: JobFilter) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if f.states:
        clauses.append(jobs.c.state.in_([s.value for s in f.states]))
    if f.queues:
        clauses.append(jobs.c.queue.in_(list(f.queues)))
    if f.names:
        clauses.append(jobs.c.name.in_(list(f.names)))
    if f.created_after is not None:
        clauses.append(jobs.c.created_at >= f.created_after)
    if f.created_before is not None:
        clauses.append(jobs.c.created_at < f.created_before)
    if f.search:
        term = f.search.strip()
        options: list[ColumnElement[bool]] = [
            jobs.c.unique_key.contains(term, autoescape=True),
            jobs.c.name.contains(term, autoescape=True),
        ]
        if term.isdigit():
            options.append(jobs.c.id == int(term))
        clauses.append(sa.or_(*options))
    return clauses
