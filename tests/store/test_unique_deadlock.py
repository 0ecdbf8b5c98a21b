"""PostgreSQL: an enqueue batch that clears stale unique holders and the worker's batched
endings of those same jobs lock the job rows in one order (ascending id), so neither waits for
the other in a cycle (PostgreSQL would abort one side after deadlock_timeout); so do a
worker's releases and a person's bulk action on running jobs.

The interleaving is forced, not hoped for: the enqueue is held between clearing its first and
its second holder (a hook on :func:`corequeue.store.unique.release`) until the worker's ending
batch is seen waiting for a row lock; only then does the enqueue go on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from corequeue.core.lifecycle import Action
from corequeue.core.states import Outcome
from corequeue.store import unique
from corequeue.store.queries import Store
from corequeue.store.records import ClaimedJob
from testing.faults import wait_for
from testing.store_support import at, claim, ending
from tests.conftest import empty_postgres
from tests.store.test_unique import enqueue, holds
from tests.store.test_unique import unique as unique_job

DEADLINE = 20.0


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    store = Store.from_url(empty_postgres(postgres_url))
    try:
        yield store
    finally:
        store.dispose()


def waiting_for_a_row_lock(store: Store, besides: int) -> bool:
    """Whether a backend of this database but ``besides`` waits for a lock."""
    with store.engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid NOT IN (pg_backend_pid(), :besides)"
            ),
            {"besides": besides},
        ).scalar_one()
    return bool(found)


class Threaded:
    """``run`` in a thread, keeping what it returned or raised."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = run()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def outcome(self) -> Any:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "still blocked"
        if self.error is not None:
            raise self.error
        return self.result


def test_an_enqueue_clearing_two_holders_and_their_ending_batch_do_not_deadlock(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pg_store
    # Two running holders of keys "a" and "b" whose policy ("started") no longer holds them:
    # the next enqueue of each key clears it. "a" has the lower id.
    enqueue(store, unique_job("a", until="started"), unique_job("b", until="started"))
    running: list[ClaimedJob] = sorted(claim(store, now=at(1)), key=lambda j: j.id)
    a, b = running
    assert holds(store) == {a.id: "a", b.id: "b"}

    # The enqueue clears "b" first (its batch order), then is held before clearing "a".
    cleared_first, go_on = threading.Event(), threading.Event()
    real_release = unique.release

    def release(conn: Any, job_id: int, key: str, state: Any) -> bool:
        if job_id == a.id:
            cleared_first.set()
            assert go_on.wait(DEADLINE), "the test never let the enqueue go on"
        return real_release(conn, job_id, key, state)

    monkeypatch.setattr(unique, "release", release)

    with store.engine.connect() as app:  # the application's transaction
        enqueuer = app.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        app.commit()

        def enqueue_in_the_application_s_transaction() -> list[tuple[int, bool]]:
            with app.begin():
                batch = [unique_job("b", until="started"), unique_job("a", until="started")]
                inserted = store.job_insert_many(batch, now=at(2), connection=app)
                return [(i.id, i.inserted) for i in inserted]

        enqueuing = Threaded(enqueue_in_the_application_s_transaction)
        wait_for(
            lambda: cleared_first.is_set() or not enqueuing.thread.is_alive(),
            timeout=DEADLINE,
            what="the enqueue clearing its first holder",
        )
        assert enqueuing.error is None, enqueuing.error
        # The worker ends both jobs in one batch while the enqueue holds what it has locked.
        ends = [ending(j, Outcome.SUCCEEDED, now=at(3)) for j in (a, b)]
        finishing = Threaded(lambda: store.job_finish_many(ends))
        wait_for(
            lambda: waiting_for_a_row_lock(store, enqueuer),
            timeout=DEADLINE,
            what="the ending batch waiting",
        )
        go_on.set()

        inserted = enqueuing.outcome()
        assert sorted(finishing.outcome()) == [a.id, b.id]

    assert [new for _, new in inserted] == [True, True]
    (new_b, _), (new_a, _) = inserted
    assert holds(store) == {a.id: "", b.id: "", new_a: "a", new_b: "b"}


def locked_elsewhere(store: Store, job_id: int) -> bool:
    """Whether another transaction holds job ``job_id``'s row lock (asked without waiting)."""
    with store.engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT id FROM corequeue_jobs WHERE id = :id FOR UPDATE SKIP LOCKED"),
            {"id": job_id},
        ).first()
        conn.rollback()
    return found is None


@pytest.mark.parametrize("batch", ["endings", "releases", "bulk cancel"])
def test_a_batch_locks_its_jobs_in_ascending_id_whatever_its_order(
    pg_store: Store, batch: str
) -> None:
    # A worker's endings and releases, and a person's bulk action on running jobs.
    store = pg_store
    enqueue(store, *(unique_job(key, until="started") for key in "abc"))
    *lower, highest = sorted(claim(store, now=at(1)), key=lambda j: j.id)
    descending = [highest, *reversed(lower)]
    with store.engine.begin() as conn:  # the rows' versions stored in descending id too
        for job in descending:
            conn.execute(
                sa.text("UPDATE corequeue_jobs SET priority = 0 WHERE id = :id"), {"id": job.id}
            )

    def run() -> list[int]:
        if batch == "endings":
            ends = [ending(j, Outcome.SUCCEEDED, now=at(2)) for j in descending]
            return store.job_finish_many(ends)
        if batch == "bulk cancel":
            done, _ = store.job_act_many([j.id for j in descending], Action.CANCEL, now=at(2))
            return [j.id for j in descending][:done]
        return store.job_release_many(descending, now=at(2))

    with store.engine.connect() as other:  # another transaction holds the highest id's row
        other.execute(
            sa.text("SELECT id FROM corequeue_jobs WHERE id = :id FOR UPDATE"), {"id": highest.id}
        )
        besides = other.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        writing = Threaded(run)
        wait_for(
            lambda: waiting_for_a_row_lock(store, besides),
            timeout=DEADLINE,
            what="the batch waiting",
        )
        # Waiting for the highest id, the batch already holds every lower one: it never
        # holds a row another statement needs while waiting for a lower one.
        assert [locked_elsewhere(store, j.id) for j in lower] == [True, True]
        other.rollback()
        assert sorted(writing.outcome()) == sorted(j.id for j in descending)
