"""The application's engine checks a pooled connection only after it sat idle, and the
short paths' kept connection (PostgreSQL)."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa

from corequeue.core import lifecycle
from corequeue.core.errors import DatabaseUnavailable
from corequeue.core.states import JobState, Outcome
from corequeue.store.engine import create_engine, ping_after_idle
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd, ClaimedJob, JobFilter
from testing.store_support import T0, new_job
from tests.conftest import empty_postgres


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def _driver_pid(store: Store) -> int:
    """The server process behind the statements that go straight to the driver."""
    assert store._driver is not None
    ((pid,),) = store._driver("SELECT pg_backend_pid()", {})
    return int(pid)


def _terminate(postgres_url: str, pid: int) -> None:
    admin = create_engine(postgres_url)
    with admin.connect() as conn:
        # pg_terminate_backend(pid, timeout) waits until the backend is gone.
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})
        conn.commit()
    admin.dispose()


def _kill_kept_backend(store: Store, postgres_url: str) -> int:
    """Terminate the server process behind ``store``'s kept driver connection; returns its
    pid."""
    dead = _driver_pid(store)
    _terminate(postgres_url, dead)
    return dead


def _counting_checkouts(engine: sa.Engine) -> list[int]:
    checkouts: list[int] = []
    sa.event.listen(engine, "checkout", lambda *args: checkouts.append(1))
    return checkouts


def _backends(postgres_url: str, running: str | None = None) -> set[int]:
    """The server's processes (``running``: only those running that query now)."""
    query = "SELECT pid FROM pg_stat_activity"
    if running is not None:
        query += " WHERE state = 'active' AND query = :q"
    admin = create_engine(postgres_url)
    with admin.connect() as conn:
        pids = conn.execute(sa.text(query), {"q": running}).scalars().all()
    admin.dispose()
    return set(pids)


def _counting_pings(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    real = engine.dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(real(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", do_ping)
    return pings


def test_a_connection_used_a_moment_ago_is_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(postgres_url)  # the application's engine: ping after 1 s idle
    pings = _counting_pings(engine, monkeypatch)

    first = _backend_pid(engine)
    second = _backend_pid(engine)

    assert second == first  # the same pooled connection, reused
    assert pings == []  # and no extra round trip before the query
    engine.dispose()


def test_a_dead_connection_idle_past_the_threshold_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(postgres_url, pool_pre_ping=False)
    ping_after_idle(engine, idle=0.0)  # every checkout counts as "after idle"
    pings = _counting_pings(engine, monkeypatch)
    dead = _backend_pid(engine)
    _terminate(postgres_url, dead)

    replacement = _backend_pid(engine)  # no error: the dead connection was swapped out

    assert replacement != dead
    assert pings  # it was checked before use
    engine.dispose()


def test_one_job_on_a_dead_connection_says_unavailable_and_the_next_one_is_stored(
    postgres_url: str,
) -> None:
    # A single job outside the caller's transaction runs on the driver's connection directly
    # (the short path): a connection that died under it is dropped from the pool, the error is
    # corequeue's DatabaseUnavailable, and nothing half-done is left behind.
    store = Store(create_engine(empty_postgres(postgres_url)))
    (first,) = store.job_insert_many([new_job()], now=T0)
    dead = _kill_kept_backend(store, postgres_url)
    # Used a moment ago, so it is not pinged: the INSERT meets the dead connection.
    with pytest.raises(DatabaseUnavailable, match="database unavailable at postgresql"):
        store.job_insert_many([new_job()], now=T0)

    (second,) = store.job_insert_many([new_job()], now=T0)

    assert _driver_pid(store) != dead
    assert [j.id for j in store.job_list(JobFilter())] == [second.id, first.id]
    store.dispose()


def test_the_short_paths_say_unavailable_when_the_server_refuses_connections() -> None:
    # A claim, a batch of endings and one job each open a pooled connection when none is
    # idle; a refused connect must be corequeue's DatabaseUnavailable (the worker waits for
    # the database on that), not the driver's own error (the worker would crash on it).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens on it
    store = Store(create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x", worker=True))
    job = ClaimedJob(1, "x", "{}", "default", 0, T0, 1, 1, None, "lease", T0)
    change = lifecycle.finish(job.snapshot(), Outcome.SUCCEEDED, lease="lease", now=T0)
    end = AttemptEnd(1, "lease", 1, Outcome.SUCCEEDED, change, "w", T0, T0)
    calls = {
        "claim": lambda: store.job_claim_many(queues=[], limit=1, lease="a", worker_id="w", now=T0),
        "endings": lambda: store.job_finish_many([end]),
        "one job": lambda: store.job_insert_many([new_job()], now=T0),
    }
    for what, call in calls.items():
        with pytest.raises(DatabaseUnavailable, match=f"database unavailable at .*:{port}"):
            call()
            pytest.fail(f"{what}: no error")
    store.dispose()


def test_one_job_refused_by_the_database_leaves_its_connection_transactional(
    postgres_url: str,
) -> None:
    # The short path runs its INSERT in autocommit; after an error the pooled connection must
    # be back to running transactions, or the next caller's rollback would undo nothing.
    store = Store(create_engine(empty_postgres(postgres_url), pool_size=1, max_overflow=0))
    with pytest.raises(sa.exc.DataError):
        store.job_insert_many([new_job("x" * 300)], now=T0)  # name is VARCHAR(255)

    with store.engine.connect() as conn:
        store.job_insert_many([new_job(), new_job()], now=T0, connection=conn)
        conn.rollback()

    assert store.job_list(JobFilter()) == []
    store.dispose()


def test_a_claim_on_a_dead_connection_says_unavailable_and_the_next_claim_gets_the_job(
    postgres_url: str,
) -> None:
    # The worker's claim also runs on the driver's connection directly (an idle worker's
    # pick-up latency is mostly that statement's round trip).
    store = Store(create_engine(empty_postgres(postgres_url), worker=True))
    (job,) = store.job_insert_many([new_job(run_at=T0)], now=T0)
    assert store.job_claim_many(queues=["nowhere"], limit=1, lease="a", worker_id="w", now=T0) == []
    dead = _kill_kept_backend(store, postgres_url)
    with pytest.raises(DatabaseUnavailable, match="database unavailable at postgresql"):
        store.job_claim_many(queues=[], limit=1, lease="a", worker_id="w", now=T0)

    (claimed,) = store.job_claim_many(queues=["default"], limit=5, lease="b", worker_id="w", now=T0)

    assert _driver_pid(store) != dead  # the dead connection was dropped
    assert (claimed.id, claimed.lease, claimed.attempts) == (job.id, "b", 1)
    assert claimed.run_at == T0 and claimed.run_at.tzinfo is UTC  # as the column type gives it
    record = store.job_get(job.id)
    assert record is not None and record.state is JobState.RUNNING
    store.dispose()


def test_the_short_paths_keep_one_connection_outside_the_pool(postgres_url: str) -> None:
    # run_in_worker() without a connection, and the worker's claims, run on one connection
    # the process keeps: no pool check-out and return around each statement.
    store = Store(create_engine(empty_postgres(postgres_url)))
    store.job_insert_many([new_job()], now=T0)
    checkouts = _counting_checkouts(store.engine)
    kept = _driver_pid(store)

    for _ in range(3):
        store.job_insert_many([new_job()], now=T0)

    assert _driver_pid(store) == kept
    assert checkouts == []
    assert store.engine.pool.checkedout() == 0  # detached: it takes none of the pool's slots
    assert len(store.job_list(JobFilter())) == 4
    store.dispose()


def test_a_second_thread_uses_the_pool_while_the_kept_connection_is_busy(
    postgres_url: str,
) -> None:
    store = Store(create_engine(empty_postgres(postgres_url)))
    kept = _driver_pid(store)
    checkouts = _counting_checkouts(store.engine)
    assert store._driver is not None
    sleeper = threading.Thread(target=store._driver, args=("SELECT pg_sleep(1)", {}))
    sleeper.start()
    deadline = time.monotonic() + 10
    while kept not in _backends(postgres_url, running="SELECT pg_sleep(1)"):  # it is busy
        assert time.monotonic() < deadline, "the sleeping statement never started"
        time.sleep(0.01)

    other = _driver_pid(store)  # does not wait for the kept connection

    assert other != kept
    assert checkouts == [1]
    sleeper.join()
    assert _driver_pid(store) == kept  # free again
    store.dispose()


def test_a_dead_kept_connection_idle_past_the_threshold_is_replaced(postgres_url: str) -> None:
    engine = create_engine(empty_postgres(postgres_url))
    ping_after_idle(engine, idle=0.0)  # every use counts as "after idle" (before the store)
    store = Store(engine)
    dead = _kill_kept_backend(store, postgres_url)

    store.job_insert_many([new_job()], now=T0)  # no error: the dead connection was replaced

    assert _driver_pid(store) != dead
    assert len(store.job_list(JobFilter())) == 1
    store.dispose()


def test_a_forked_child_opens_its_own_kept_connection(postgres_url: str) -> None:
    # After fork() the parent's connection must stay the parent's: a child that used it, or
    # closed it, would break the parent's session.
    store = Store(create_engine(empty_postgres(postgres_url)))
    parent = _driver_pid(store)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            store.job_insert_many([new_job()], now=T0)
            os.write(write, str(_driver_pid(store)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(child, 0)
    child_pid = int(os.read(read, 64) or b"0")
    os.close(read)

    assert os.waitstatus_to_exitcode(status) == 0
    assert child_pid not in (0, parent)
    assert _driver_pid(store) == parent  # the parent's session is intact
    assert len(store.job_list(JobFilter())) == 1
    store.dispose()


def test_disposing_the_engine_closes_the_kept_connection(postgres_url: str) -> None:
    store = Store(create_engine(empty_postgres(postgres_url)))
    kept = _driver_pid(store)
    assert kept in _backends(postgres_url)

    store.dispose()

    deadline = time.monotonic() + 10
    while kept in _backends(postgres_url):
        assert time.monotonic() < deadline, "the kept connection is still open"
        time.sleep(0.01)
