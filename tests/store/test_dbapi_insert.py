"""store.job_insert_dbapi: one job inserted through the DB-API cursor of a connection the store
does not own (the Django backend's shared-database path), inside that connection's transaction,
on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from corequeue.core.states import JobState
from corequeue.store.queries import Store
from corequeue.store.records import NewJob

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def new_job(name: str, **changes: object) -> NewJob:
    fields: dict[str, object] = {
        "name": name,
        "params": '{"args": [1], "kwargs": {}}',
        "queue": "mail",
        "priority": -7,
        "run_at": NOW + timedelta(seconds=30),
        "max_attempts": 2,
        "timeout": 1.5,
        "unique_key": "",
        "source": "here.py:1",
    }
    fields.update(changes)
    return NewJob(**fields)  # type: ignore[arg-type]


def test_the_job_exists_only_once_that_transaction_commits(store: Store, database_url: str) -> None:
    other = sa.create_engine(database_url, poolclass=NullPool)  # stands for Django's connection
    raw = other.raw_connection()
    try:
        cursor = raw.cursor()
        dropped = store.job_insert_dbapi(new_job("a"), now=NOW, cursor=cursor)
        assert store.job_get(dropped) is None  # not committed: nobody else sees it
        raw.rollback()
        assert store.job_get(dropped) is None

        cursor = raw.cursor()
        kept = store.job_insert_dbapi(new_job("b"), now=NOW, cursor=cursor)
        assert store.job_get(kept) is None
        raw.commit()
    finally:
        raw.close()
        other.dispose()
    record = store.job_get(kept)
    assert record is not None
    assert (record.name, record.queue, record.priority, record.state) == (
        "b",
        "mail",
        -7,
        JobState.REQUESTED,
    )
    assert record.run_at == NOW + timedelta(seconds=30) and record.created_at == NOW
    assert (record.max_attempts, record.timeout, record.source) == (2, 1.5, "here.py:1")
    assert record.params == '{"args": [1], "kwargs": {}}'


def test_a_job_with_a_unique_key_is_refused(store: Store, database_url: str) -> None:
    with pytest.raises(ValueError, match="connection="):
        store.job_insert_dbapi(new_job("a", unique_key="k"), now=NOW, cursor=None)
