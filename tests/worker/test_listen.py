"""Wake-ups on PostgreSQL: LISTEN/NOTIFY, with polling when the LISTEN connection is down.

An idle worker claims on a notification, when a job it runs finishes, when a delayed job falls
due, or at the next poll; never in a tight loop. A LISTEN connection that dies is noticed
("degraded to polling" in the log and in the worker's stats) and re-established.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from corequeue.config import Settings
from corequeue.store.queries import Store
from corequeue.worker import Worker
from corequeue.worker.notifier import APPLICATION_NAME, LISTEN_WAIT, Notifier, WakeUp
from testing.e2e import WorkerFactory, wait_for
from testing.jobs import Add

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgresql_only
def test_a_job_enqueued_while_listen_is_down_runs_by_polling(
    store: Store, database_url: str
) -> None:
    # The worker cannot LISTEN at all (nothing answers on port 1): only its poll finds jobs.
    settings = Settings(
        database_url=database_url, imports=("testing.jobs",), max_processes=1, poll_interval=0.2
    )
    worker = Worker(store, settings, listen_url=make_url("postgresql://postgres@127.0.0.1:1/x"))
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    try:
        handle = Add(2, 3).run_in_worker()
        assert handle.wait(timeout=60) == 5
        assert worker.notifier is not None and worker.notifier.degraded
        (beat,) = store.worker_list()
        assert beat.stats["degraded"] is True
    finally:
        worker.request_stop()
        thread.join(timeout=60)
    assert not thread.is_alive()


@postgresql_only
def test_a_lost_listen_connection_is_reestablished(
    store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path
) -> None:
    # Polls and heartbeats an hour apart: after the LISTEN connection is killed, only a new
    # LISTEN can wake the worker for the job enqueued below.
    worker = workers(
        database_url,
        "--poll-interval",
        "3600",
        "--heartbeat-interval",
        "3600",
        "--heartbeat-timeout",
        "7300",
    )
    wait_for(lambda: "listening for enqueue notifications" in worker.log(), what="LISTEN")
    assert Add(1, 1).run_in_worker().wait(timeout=60) == 2

    with store.engine.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        ).scalar()
    assert killed == 1

    wait_for(lambda: "degraded to polling" in worker.log(), what="the loss to be noticed")
    wait_for(
        lambda: worker.log().count("listening for enqueue notifications") >= 2,
        what="LISTEN again",
    )
    assert Add(2, 2).run_in_worker().wait(timeout=60) == 4
    assert worker.stop() == 0


@postgresql_only
def test_the_listen_thread_stops_within_one_short_wait(database_url: str) -> None:
    # The worker's exit waits for this thread, and a wait for notifications cannot be
    # interrupted: the thread waits LISTEN_WAIT seconds at a time (it used to wait a second).
    notifier = Notifier(make_url(database_url), WakeUp())
    notifier.start()
    assert notifier.listening.wait(30)

    notifier.stop()
    notifier.join(timeout=2 * LISTEN_WAIT + 0.25)

    assert not notifier.is_alive()
