"""Schema version 2 (crash semantics): the jobs' worker-loss and deferral counts, and SQLite ids
that are never reused; and the migration from version 1, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from corequeue.core.states import Outcome
from corequeue.store import schema
from corequeue.store.engine import normalize_url
from corequeue.store.queries import Store
from testing.schema_v1 import ADDED_IN_2, create_v1
from testing.store_support import T0, at, claim, ending, insert, new_job


@pytest.fixture
def v1_url(database_url: str, tmp_path: Path) -> str:
    """A database of the same kind whose corequeue tables are at schema version 1."""
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'v1.sqlite3'}"
    engine = sa.create_engine(normalize_url(database_url))
    with engine.begin() as conn:
        schema.metadata.drop_all(conn)
        create_v1(conn)
    engine.dispose()
    return database_url


def _columns(store: Store, table: str) -> list[str]:
    with store.engine.connect() as conn:
        return [c["name"] for c in sa.inspect(conn).get_columns(table)]


def _ids_after_pruning(store: Store) -> tuple[list[int], list[int]]:
    """Enqueue three jobs, finish and prune them, enqueue three more: both lists of ids."""
    first = insert(store, *[new_job(run_at=at(-100)) for _ in range(3)], now=at(-100))
    for job in claim(store, now=at(-99)):
        store.job_finish_many([ending(job, Outcome.ERRORED, now=at(-98))])  # attempt rows too
    assert store.job_prune_many(finished_before=T0) == 3
    assert all(store.job_get(i) is None for i in first)
    return first, insert(store, *[new_job() for _ in range(3)])


def test_ids_are_never_reused_after_pruning(store: Store) -> None:
    first, second = _ids_after_pruning(store)
    assert min(second) > max(first)
    assert second == sorted(second)


def test_version_1_is_migrated_with_its_rows_and_ids_and_ids_are_never_reused(
    v1_url: str,
) -> None:
    engine = sa.create_engine(normalize_url(v1_url))
    with engine.begin() as conn:
        jobs_v1 = sa.Table(schema.jobs.name, sa.MetaData(), autoload_with=conn)
        kept = [
            conn.execute(
                sa.insert(jobs_v1).returning(jobs_v1.c.id),
                {
                    "name": "tests.Job",
                    "queue": "default",
                    "state": "failed",
                    "params": "{}",
                    "run_at": T0,
                    "created_at": T0,
                    "finished_at": T0,
                    "attempts": 1,
                    "max_attempts": 1,
                },
            ).scalar_one()
            for _ in range(3)
        ]
        attempts_v1 = sa.Table(schema.attempts.name, sa.MetaData(), autoload_with=conn)
        attempt_id = conn.execute(
            sa.insert(attempts_v1).returning(attempts_v1.c.id),
            {
                "job_id": kept[-1],
                "attempt": 1,
                "outcome": "errored",
                "lease": "L",
                "finished_at": T0.replace(tzinfo=None),
            },
        ).scalar_one()
    engine.dispose()

    store = Store.from_url(v1_url)
    try:
        assert store.migrate() == (1, schema.SCHEMA_VERSION)
        store.check_schema()
        assert _columns(store, schema.jobs.name) == [c.name for c in schema.jobs.columns]
        for job_id in kept:
            job = store.job_get(job_id)
            assert job is not None and job.state.value == "failed"
        assert [a.id for a in store.attempt_list(kept[-1]) if a.id is not None] == [attempt_id]
        with store.engine.connect() as conn:
            counts = conn.execute(
                sa.select(*[schema.jobs.c[n] for n in ADDED_IN_2]).where(
                    schema.jobs.c.id == kept[-1]
                )
            ).one()
            assert tuple(counts) == (0, 0)
            if store.engine.dialect.name == "sqlite":
                for table in (schema.jobs, schema.attempts):
                    sql = conn.execute(
                        sa.text("SELECT sql FROM sqlite_master WHERE name = :n"),
                        {"n": table.name},
                    ).scalar_one()
                    assert "AUTOINCREMENT" in sql
                leftovers = conn.execute(
                    sa.text("SELECT name FROM sqlite_master WHERE name LIKE '%_v1'")
                ).all()
                assert leftovers == []
        # Every index is back, and new rows carry on after the highest id kept.
        with store.engine.connect() as conn:
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes(schema.jobs.name)}
        assert indexes >= {ix.name for ix in schema.jobs.indexes}
        first, second = _ids_after_pruning(store)
        assert min(first) > max(kept)
        assert min(second) > max(first)
    finally:
        store.dispose()
