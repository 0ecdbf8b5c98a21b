"""``job_enqueued`` fires in the enqueuing process once the insert is committed: strictly after
the COMMIT reached the database (a hook reading the job on another connection finds it), only
for the outermost transaction, never after a rollback; and for captured and inline enqueues
too. On SQLite and PostgreSQL, with a Core Connection and with an ORM Session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import corequeue
from corequeue import JobEvent
from corequeue.store.queries import Store
from corequeue.testing.capture import EnqueuedJobs
from corequeue.testing.inline import InlineJobs
from testing import function_jobs as fj


@pytest.fixture
def seen(store: Store) -> Iterator[list[tuple[int, str]]]:
    """(job id, its state read on another connection) for each job_enqueued, as it fires."""
    out: list[tuple[int, str]] = []

    def read_elsewhere(event: JobEvent) -> None:
        with store.engine.connect() as other:  # a new connection: sees only committed rows
            state = other.execute(
                sa.text("SELECT state FROM corequeue_jobs WHERE id = :id"), {"id": event.job_id}
            ).scalar()
        out.append((event.job_id, state or "not visible"))

    corequeue.on("job_enqueued")(read_elsewhere)
    try:
        yield out
    finally:
        corequeue.hooks.remove("job_enqueued", read_elsewhere)


def test_a_connection_commit_fires_after_the_row_is_visible_elsewhere(
    store: Store, seen: list[tuple[int, str]]
) -> None:
    with store.engine.connect() as conn:
        with conn.begin():
            handle = fj.plain.run_in_worker("p", 1, connection=conn)
            assert seen == []  # not committed yet
        assert seen == [(handle.id, "requested")]
        seen.clear()
        conn.begin()
        fj.plain.run_in_worker("p", 2, connection=conn)
        conn.rollback()
        with conn.begin():
            conn.execute(sa.text("SELECT 1"))  # a later commit fires nothing left over
    assert seen == []


def test_a_session_commit_fires_after_the_row_is_visible_elsewhere(
    store: Store, seen: list[tuple[int, str]]
) -> None:
    with Session(store.engine) as session:
        handle = fj.plain.run_in_worker("p", 1, connection=session)
        session.flush()
        assert seen == []
        session.commit()
        assert seen == [(handle.id, "requested")]
        seen.clear()
        fj.plain.run_in_worker("p", 2, connection=session)
        session.rollback()
        session.commit()
    assert seen == []


def test_only_the_outermost_connection_commit_counts(
    store: Store, seen: list[tuple[int, str]]
) -> None:
    with store.engine.connect() as conn:
        with conn.begin():
            outer = fj.plain.run_in_worker("p", 1, connection=conn)
            with conn.begin_nested():
                released = fj.plain.run_in_worker("p", 2, connection=conn)
            assert seen == []  # a released savepoint is not a commit
            savepoint = conn.begin_nested()
            fj.plain.run_in_worker("p", 3, connection=conn)
            savepoint.rollback()
        assert [job for job, _ in seen] == [outer.id, released.id]
        assert {state for _, state in seen} == {"requested"}
        seen.clear()
        with pytest.raises(RuntimeError, match="abandon"), conn.begin():
            with conn.begin_nested():
                fj.plain.run_in_worker("p", 4, connection=conn)
            raise RuntimeError("abandon the outer transaction")
    assert seen == []


def test_only_the_outermost_session_commit_counts(
    store: Store, seen: list[tuple[int, str]]
) -> None:
    with Session(store.engine) as session:
        outer = fj.plain.run_in_worker("p", 1, connection=session)
        with session.begin_nested():
            released = fj.plain.run_in_worker("p", 2, connection=session)
        assert seen == []
        savepoint = session.begin_nested()
        fj.plain.run_in_worker("p", 3, connection=session)
        savepoint.rollback()
        session.commit()
        assert [job for job, _ in seen] == [outer.id, released.id]
        assert {state for _, state in seen} == {"requested"}
        seen.clear()
        with session.begin_nested():
            fj.plain.run_in_worker("p", 4, connection=session)
        session.rollback()
    assert seen == []


def test_a_savepoint_begun_before_the_enqueue_drops_it_when_rolled_back(
    store: Store, seen: list[tuple[int, str]]
) -> None:
    with store.engine.connect() as conn, conn.begin():
        savepoint = conn.begin_nested()  # before anything listens on this connection
        fj.plain.run_in_worker("p", 1, connection=conn)
        savepoint.rollback()
        kept = fj.plain.run_in_worker("p", 2, connection=conn)
    assert [job for job, _ in seen] == [kept.id]


def test_captured_and_inline_enqueues_fire_it_too(store: Store, tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []

    def record(event: JobEvent) -> None:
        events.append((event.name, event.job_id))

    corequeue.on("job_enqueued")(record)
    try:
        with EnqueuedJobs() as captured:
            with store.engine.connect() as conn, conn.begin():
                fj.plain.run_in_worker("p", 1, connection=conn)
                assert events == []
            kept = captured.all()[0]
            assert events == [(fj.plain.name, kept.id)]
            with Session(store.engine) as session:
                fj.plain.run_in_worker("p", 2, connection=session)
                session.rollback()
            assert len(events) == 1
        events.clear()
        with InlineJobs() as inline:
            fj.plain.run_in_worker(str(tmp_path / "ran"), 3)
            assert events == [(fj.plain.name, inline.handles[0].id)]
    finally:
        corequeue.hooks.remove("job_enqueued", record)
