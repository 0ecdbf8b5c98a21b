"""Per-worker queue shares with real worker processes (issue 23), on SQLite and PostgreSQL:
``corequeue run --max-processes 3 --queue flood=1 --queue other``.

- A flood of jobs in ``flood`` that cannot finish (each waits on a gate file the test opens
  last) holds one child; jobs in ``other`` enqueued after the flood still drain in the other
  children, the worker never claims more of the flood than its one child can take, and at no
  instant do two children run ``flood`` jobs (from the jobs' recorded pids and times).
- With ``--threads 4`` (sync) or async jobs, the cap is on children: the flood's jobs run four
  at a time, all in one child.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from corequeue import enqueue_many
from corequeue.store import schema
from corequeue.store.queries import Store
from testing.async_jobs import AsyncSleep, ThreadSleep
from testing.faults import run_cli, wait_for
from testing.jobs import runs
from tests.reliability.conftest import Spawner, state_counts

IMPORTS = ("testing.async_jobs",)
SHARES = ("--max-processes", "3", "--queue", "flood=1", "--queue", "other")


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    yield request.getfixturevalue("pg_store" if request.param == "postgresql" else "sqlite_store")


def url_of(store: Store) -> str:
    return store.url.render_as_string(hide_password=False)


def started(log: str, prefix: str) -> list[dict[str, Any]]:
    return [r for r in runs(log) if r["event"] == "start" and str(r["key"]).startswith(prefix)]


def ended(log: str, prefix: str) -> list[dict[str, Any]]:
    return [r for r in runs(log) if r["event"] == "end" and str(r["key"]).startswith(prefix)]


def running_in(store: Store, queue: str) -> int:
    """Jobs of ``queue`` claimed by a worker and not ended (running or handed to a child)."""
    jobs = schema.jobs
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(jobs)
                .where(jobs.c.queue == queue, jobs.c.state == "running")
            ).scalar_one()
        )


def most_children_at_once(log: str, prefix: str) -> int:
    """The most distinct child pids running jobs of ``prefix`` at one instant (an end at t
    before a start at t)."""
    marks = sorted(
        (r["at"], 0 if r["event"] == "end" else 1, r["pid"])
        for r in runs(log)
        if str(r["key"]).startswith(prefix)
    )
    open_by_pid: dict[int, int] = {}
    most = 0
    for _, is_start, pid in marks:
        open_by_pid[pid] = open_by_pid.get(pid, 0) + (1 if is_start else -1)
        most = max(most, sum(1 for n in open_by_pid.values() if n > 0))
    return most


def test_a_flood_on_a_capped_queue_holds_one_child_while_the_other_queue_drains(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log, gate = str(tmp_path / "runs.jsonl"), str(tmp_path / "gate")
    flood = enqueue_many([ThreadSleep(log, f"f{i}", 0, gate) for i in range(12)], queue="flood")
    # One job queued behind the one running in a child (--max-pending-per-process 1): the
    # flood's share can take two jobs at once; three children would take six.
    worker = spawn(url_of(store), *SHARES, "--max-pending-per-process", "1", imports=IMPORTS)
    wait_for(lambda: started(log, "f"), timeout=60, what="the first flood job to start")
    other = enqueue_many([ThreadSleep(log, f"o{i}", 0.05) for i in range(8)], queue="other")

    # The flood cannot finish before the gate opens: "other" drains beside it, or never.
    for handle in other:
        assert handle.wait(timeout=60) is not None, worker.log()
    assert ended(log, "f") == [] and len(started(log, "f")) == 1
    assert running_in(store, "flood") <= 2  # claimed for its one child only; the rest wait
    assert len({r["pid"] for r in ended(log, "o")} - {started(log, "f")[0]["pid"]}) >= 1
    # The workers listing shows the queues as the worker was given them, shares included.
    assert [w.queues for w in store.worker_list()] == [["flood=1", "other"]]
    listing = run_cli(["stats", "--database-url", url_of(store)])
    assert "queues=flood=1,other" in listing.stdout, listing.stderr

    Path(gate).touch()
    for handle in flood:
        assert handle.wait(timeout=60) is not None, worker.log()
    assert state_counts(store) == {"succeeded": 20}
    assert most_children_at_once(log, "f") == 1
    assert "queues=flood=1,other" in worker.log()  # the starting line shows the share


@pytest.mark.parametrize("kind", ["threads", "async"])
def test_the_share_is_on_children_and_uses_their_threads_or_event_loop(
    store: Store, spawn: Spawner, tmp_path: Path, kind: str
) -> None:
    log, gate = str(tmp_path / "runs.jsonl"), str(tmp_path / "gate")
    job = ThreadSleep if kind == "threads" else AsyncSleep
    flood = enqueue_many([job(log, f"f{i}", 0, gate) for i in range(12)], queue="flood")
    options = ("--threads", "4") if kind == "threads" else ("--concurrency", "4")
    worker = spawn(url_of(store), *SHARES, *options, imports=IMPORTS)
    # Four at once (the child's threads, or its event loop's slots), all in one child.
    wait_for(lambda: len(started(log, "f")) >= 4, timeout=60, what="four flood jobs running")
    assert len({r["pid"] for r in started(log, "f")}) == 1
    other = enqueue_many([job(log, f"o{i}", 0.05) for i in range(8)], queue="other")
    for handle in other:
        assert handle.wait(timeout=60) is not None, worker.log()
    assert ended(log, "f") == []

    Path(gate).touch()
    for handle in flood:
        assert handle.wait(timeout=60) is not None, worker.log()
    assert most_children_at_once(log, "f") == 1
    assert state_counts(store) == {"succeeded": 20}


def most_at_once(log: str, prefix: str) -> int:
    """The most jobs of ``prefix`` running at one instant, in any children."""
    marks = sorted(
        (r["at"], 0 if r["event"] == "end" else 1)
        for r in runs(log)
        if str(r["key"]).startswith(prefix)
    )
    level = most = 0
    for _, is_start in marks:
        level += 1 if is_start else -1
        most = max(most, level)
    return most


def test_a_capped_queue_under_a_concurrency_limit_keeps_its_chains_in_its_child(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.corequeue.queue.flood]\nconcurrency_limit = 2\n")
    flood = enqueue_many([ThreadSleep(log, f"f{i}", 0.1) for i in range(10)], queue="flood")
    other = enqueue_many([ThreadSleep(log, f"o{i}", 0.05) for i in range(6)], queue="other")
    worker = spawn(
        url_of(store), *SHARES, "--threads", "2", "--config", str(config), imports=IMPORTS
    )
    for handle in [*flood, *other]:
        assert handle.wait(timeout=60) is not None, worker.log()
    assert most_children_at_once(log, "f") == 1  # the share: one child
    assert most_at_once(log, "f") <= 2  # the fleet's limit: two chains, one job each at a time
    assert state_counts(store) == {"succeeded": 16}


def test_a_share_is_not_a_reservation_an_idle_capped_queue_leaves_every_child_to_the_others(
    store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log, gate = str(tmp_path / "runs.jsonl"), str(tmp_path / "gate")
    other = enqueue_many([ThreadSleep(log, f"o{i}", 0, gate) for i in range(3)], queue="other")
    worker = spawn(url_of(store), *SHARES, imports=IMPORTS)
    # Each job holds its child until the gate opens: three at once take all three children.
    wait_for(lambda: len(started(log, "o")) == 3, timeout=60, what="three jobs of other running")
    assert len({r["pid"] for r in started(log, "o")}) == 3
    Path(gate).touch()
    for handle in other:
        assert handle.wait(timeout=60) is not None, worker.log()
