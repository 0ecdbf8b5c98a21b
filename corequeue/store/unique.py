"""Unique keys in the database: inserting a job with a key, clearing a stale hold, and taking a
key again on a person's retry. What holds a key and what a conflict does are the core's
decisions (:mod:`corequeue.core.uniqueness`); this module persists them.

One job per (name, key) holds it: the ``unique_hold`` column under the partial unique index
ux_corequeue_jobs_unique_hold. Every statement here is a compare-and-set, so enqueues of one key
racing on any number of connections leave one holder, whichever order they run in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from corequeue.core import uniqueness
from corequeue.core.uniqueness import OnConflict, Resolution
from corequeue.store import schema
from corequeue.store.records import Inserted, NewJob
from corequeue.store.rows import NOTIFY_CHANNEL, read_state

jobs = schema.jobs

# Literal SQL, not bound parameters: PostgreSQL matches this WHERE to the partial unique index
# when planning, and a generic plan (psycopg prepares a statement after 5 runs on a connection)
# with $n parameters in it matches no index and the INSERT fails.
_HELD = sa.text("unique_hold <> ''")


def raises(job: NewJob) -> bool:
    """Whether enqueuing ``job`` may raise DuplicateJob."""
    return bool(job.unique_key) and job.on_conflict is OnConflict.RAISE


#: PostgreSQL: transaction-level advisory locks on the keys' buckets (of LOCK_BUCKETS), taken
#: in one order, in a key space of their own (two int4 keys; 0x636F7265 is "core").
LOCK_BUCKETS = 64
_LOCK_KEYS = sa.text(
    "SELECT count(pg_advisory_xact_lock(1668248165, b)) FROM ("
    "SELECT DISTINCT (hashtext(k) & :mask) AS b FROM unnest(CAST(:keys AS text[])) AS k"
    " ORDER BY b) AS s"
)


def lock_keys(conn: Connection, jobs: Sequence[NewJob]) -> None:
    """PostgreSQL, a batch of two or more unique jobs: lock their keys' buckets first, in one
    order. Each insert waits for a transaction holding its key uncommitted; two batches taking
    the same keys in different orders would each wait for the other (a deadlock) without this.
    Buckets bound the locks a batch takes (the lock table is small); batches whose keys share a
    bucket run one after the other."""
    keys = sorted({f"{j.name} {j.unique_key}" for j in jobs})
    if len(keys) > 1:
        conn.execute(_LOCK_KEYS, {"keys": keys, "mask": LOCK_BUCKETS - 1})


def lock_stale(conn: Connection, batch: Sequence[NewJob], *, now: datetime) -> None:
    """PostgreSQL, a batch of two or more unique jobs: lock the holders of their keys that are
    out of their scope (the ones the batch will clear), in ascending id, before clearing any.
    Clearing them one by one in the batch's order would lock them in that order, and a worker's
    batch of endings of the same jobs (which locks in ascending id: endings.FINISH_POSTGRESQL)
    could hold one and wait for another: a deadlock. A holder leaving its scope after this read
    is still cleared, in the batch's order (see docs/how-to/uniqueness.md)."""
    pairs = {(j.name, j.unique_key) for j in batch}
    if len(pairs) < 2:
        return
    # Names and keys apart: both are conditions of the index (the pairs as one row IN list
    # would leave the keys to a filter over every holder of the name).
    found = conn.execute(
        sa.select(
            jobs.c.id,
            jobs.c.name,
            jobs.c.unique_hold,
            jobs.c.state,
            jobs.c.started_at,
            jobs.c.finished_at,
            jobs.c.unique_until,
        ).where(
            jobs.c.name.in_({name for name, _ in pairs}),
            jobs.c.unique_hold.in_({key for _, key in pairs}),
            _HELD,
        )
    )
    stale = sorted(
        r.id
        for r in found
        if (r.name, r.unique_hold) in pairs
        and not uniqueness.holds(
            r.unique_until, read_state(r.state), r.started_at, r.finished_at, now=now
        )
    )
    if stale:
        ids = sa.bindparam("ids", stale, type_=postgresql.ARRAY(sa.BigInteger))
        conn.execute(
            sa.select(jobs.c.id)
            .where(jobs.c.id == sa.any_(ids))
            .order_by(jobs.c.id)
            .with_for_update()
        ).all()


def insert_statement(
    row: dict[str, Any], returning: list[ColumnElement[Any]], *, is_postgresql: bool
) -> sa.Insert:
    """The INSERT of ``row`` that inserts nothing when its key is held."""
    target: dict[str, Any] = {
        "index_elements": [jobs.c.name, jobs.c.unique_hold],
        "index_where": _HELD,
    }
    if is_postgresql:
        return (
            postgresql.insert(jobs)
            .values(row)
            .on_conflict_do_nothing(**target)
            .returning(*returning)
        )
    return sqlite.insert(jobs).values(row).on_conflict_do_nothing(**target).returning(*returning)


def insert_unique(
    conn: Connection,
    row: dict[str, Any],
    returning: list[ColumnElement[Any]],
    *,
    on_conflict: OnConflict,
    now: datetime,
    is_postgresql: bool,
) -> Inserted:
    """Insert ``row`` (a job with a unique key) unless a job in its scope holds the key: then
    keep that job, give it the row's parameters and run time, or raise DuplicateJob, as
    :func:`uniqueness.resolve` says. A holder out of its scope loses its hold first."""
    stmt = insert_statement(row, returning, is_postgresql=is_postgresql)
    name, key = row["name"], row["unique_hold"]
    for _ in range(uniqueness.UNIQUE_INSERT_TRIES):
        job_id = conn.execute(stmt).scalar()
        if job_id is not None:
            return Inserted(job_id, True)
        holder = _holder(conn, name, key)
        if holder is None:
            continue  # released meanwhile: insert again
        state = read_state(holder.state)
        if not uniqueness.holds(
            holder.unique_until, state, holder.started_at, holder.finished_at, now=now
        ):
            release(conn, holder.id, key, state)
            continue
        resolution = uniqueness.resolve(on_conflict, state)
        if resolution is Resolution.RAISE:
            raise uniqueness.duplicate(name, key, holder.id)
        replaced = resolution is Resolution.REPLACE and _replace(
            conn, holder.id, row, is_postgresql=is_postgresql
        )
        if resolution is Resolution.REPLACE and not replaced:
            continue  # claimed meanwhile: decide again
        return Inserted(holder.id, False)
    raise uniqueness.contention(key)


def _holder(conn: Connection, name: str, key: str) -> Any:
    query = sa.select(
        jobs.c.id,
        jobs.c.state,
        jobs.c.started_at,
        jobs.c.finished_at,
        jobs.c.unique_until,
    ).where(jobs.c.name == name, jobs.c.unique_hold == key, _HELD)
    return conn.execute(query).first()


def release(conn: Connection, job_id: int, key: str, state: Any) -> bool:
    """Clear job ``job_id``'s hold on ``key`` if it is still in ``state``: whether it did."""
    done = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.unique_hold == key, jobs.c.state == state.value)
        .values(unique_hold="")
    )
    return bool(done.rowcount)


def _replace(conn: Connection, job_id: int, row: dict[str, Any], *, is_postgresql: bool) -> bool:
    """The waiting holder ``job_id`` takes ``row``'s parameters and run time (a debounce):
    whether it was still waiting."""
    done = conn.execute(
        sa.update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.state == "requested",
            jobs.c.unique_hold == row["unique_hold"],
        )
        .values(params=row["params"], run_at=row["run_at"])
    )
    if done.rowcount and is_postgresql:
        conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, row["queue"])))
    return bool(done.rowcount)


def retake(conn: Connection, job_id: int, *, now: datetime) -> None:
    """Job ``job_id``, sent back to wait by a person, takes its key again if its policy says
    so (:func:`uniqueness.retakes_on_retry`), clearing a stale holder first. Raises
    sqlalchemy's IntegrityError when a job in its scope holds the key."""
    job = conn.execute(
        sa.select(
            jobs.c.name,
            jobs.c.unique_key,
            jobs.c.unique_hold,
            jobs.c.unique_until,
            jobs.c.started_at,
        ).where(jobs.c.id == job_id, jobs.c.state == "requested")
    ).first()
    if job is None or not job.unique_key or job.unique_hold == job.unique_key:
        return
    if not uniqueness.retakes_on_retry(job.unique_until, job.started_at):
        return
    holder = _holder(conn, job.name, job.unique_key)
    if holder is not None:
        state = read_state(holder.state)
        if not uniqueness.holds(
            holder.unique_until, state, holder.started_at, holder.finished_at, now=now
        ):
            release(conn, holder.id, job.unique_key, state)
    conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(unique_hold=job.unique_key))
