"""Enqueuing: inserting jobs, one or many, plain or with a unique key.

One plain job outside a caller's transaction goes through the driver fast path
(:mod:`corequeue.store.driver`) on PostgreSQL; each inserted row NOTIFYs its queue there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from corequeue.core import uniqueness
from corequeue.core.errors import DuplicateJob
from corequeue.store import flow, migration, schema, unique
from corequeue.store.base import StoreBase
from corequeue.store.records import Inserted, NewJob
from corequeue.store.rows import NOTIFY_CHANNEL, ConnectionLike, is_session, jobs, new_row


class InsertQueries(StoreBase):
    """Inserting jobs."""

    #: Whether this store's database was found at a schema version this code may write to:
    #: checked before the first insert only, so an enqueue stays one INSERT.
    _schema_allows_inserts = False

    def _refuse_newer_schema(self, connection: ConnectionLike | None) -> None:
        """Raise SchemaError when the tables are at a schema version newer than this code's
        (its jobs could miss what the newer version requires). No tables: left to the insert."""
        if connection is None:
            with self.read() as conn:
                found = migration.version(conn)
        else:
            conn = connection.connection() if is_session(connection) else connection
            found = migration.version(conn)
        if found is not None and found > schema.SCHEMA_VERSION:
            raise migration.newer_schema(found, self.url)
        self._schema_allows_inserts = found is not None

    def job_insert_many(
        self, new_jobs: Sequence[NewJob], *, now: datetime, connection: ConnectionLike | None = None
    ) -> list[Inserted]:
        """Insert jobs; with ``connection``, inside the caller's transaction (not committed here).

        A job whose unique key is held by a job of the same name in the scope of its policy
        is not inserted: its entry names that job instead (which the job's ``on_conflict`` may
        have given the new parameters and run time), or DuplicateJob is raised
        (:mod:`corequeue.store.unique`).
        """
        if not new_jobs:
            return []
        with self._errors():
            if not self._schema_allows_inserts:
                self._refuse_newer_schema(connection)
            # A job with limits of its own also writes its limit's slots: in a transaction.
            limited = new_jobs[0].concurrency_key or new_jobs[0].rate_key
            if connection is None and len(new_jobs) == 1 and self.is_postgresql and not limited:
                if not new_jobs[0].unique_key and self._driver is not None:
                    return [self._driver_insert(new_row(new_jobs[0], now))]
                # One job is one statement, atomic by itself: no BEGIN and COMMIT round trips.
                with self._autocommit() as conn:
                    return self._insert(conn, new_jobs, now)
            if connection is None:
                with self._begin() as conn:
                    return self._insert(conn, new_jobs, now)
            conn = connection.connection() if is_session(connection) else connection
            if len(new_jobs) > 1 and any(unique.raises(j) for j in new_jobs):
                # A DuplicateJob leaves nothing of the batch in the caller's transaction.
                with conn.begin_nested():
                    return self._insert(conn, new_jobs, now)
            return self._insert(conn, new_jobs, now)

    def job_insert_dbapi(self, new_job: NewJob, *, now: datetime, cursor: Any) -> int:
        """Insert one plain job through ``cursor``, a DB-API cursor of a connection this store
        does not own (Django's, on the same database), inside that connection's transaction:
        the job exists only if it commits. The INSERT is compiled for this store's dialect, so
        the cursor's driver must be the one its URL names (psycopg, sqlite3). Returns the id.

        Raises ValueError for a job with a unique key or limits of its own (they need more
        than one statement: enqueue those through a SQLAlchemy ``connection=``)."""
        if new_job.unique_key or new_job.concurrency_key or new_job.rate_key:
            raise ValueError(
                "a job with a unique key or limits cannot be inserted through a DB-API cursor: "
                "enqueue it with connection= (a SQLAlchemy Connection or Session)"
            )
        if not self._schema_allows_inserts:
            with self._errors():
                self._refuse_newer_schema(None)
        row = new_row(new_job, now)
        done = self._insert_one.compile(dialect=self.engine.dialect, column_keys=list(row))
        params = done.construct_params(row)
        for key, process in done._bind_processors.items():
            if key in params and callable(process):
                params[key] = process(params[key])
        values: Any = params
        if done.positional:
            values = tuple(params[key] for key in done.positiontup or ())
        cursor.execute(str(done), values)
        return int(cursor.fetchone()[0])

    def _insert(
        self, conn: Connection, new_jobs: Sequence[NewJob], now: datetime
    ) -> list[Inserted]:
        # Ids follow the input order (insertion order breaks priority ties): runs of plain jobs
        # go in one multi-row INSERT each, unique jobs one by one between them.
        out: list[Inserted] = []
        plain: list[dict[str, Any]] = []
        if self.is_postgresql:
            keyed = [j for j in new_jobs if j.unique_key]
            unique.lock_keys(conn, keyed)
            unique.lock_stale(conn, keyed, now=now)
        for job in new_jobs:
            row = new_row(job, now)
            if not job.unique_key:
                plain.append(row)
                continue
            out.extend(self._insert_plain(conn, plain))
            plain = []
            try:
                out.append(self._insert_unique(conn, job, row, now))
            except DuplicateJob as exc:
                if any(i.id == exc.job_id and i.inserted for i in out):  # rolled back with it
                    raise uniqueness.duplicate_in_batch(job.name, job.unique_key) from None
                raise
        out.extend(self._insert_plain(conn, plain))
        for need in flow.job_slot_needs(new_jobs):  # the slots of the jobs' own limits
            flow.resize_slots(conn, need, postgresql=self.is_postgresql)
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

    def _insert_unique(
        self, conn: Connection, job: NewJob, row: dict[str, Any], now: datetime
    ) -> Inserted:
        return unique.insert_unique(
            conn,
            row,
            self._returning(),
            on_conflict=job.on_conflict,
            now=now,
            is_postgresql=self.is_postgresql,
        )
