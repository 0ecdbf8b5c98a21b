"""The pool hands tasks only to children that have started (said "ready"), and reads what a
child sent to the end before recording its jobs lost."""

from __future__ import annotations

import itertools
import logging
import pickle
import socket
import struct
import time
from types import SimpleNamespace
from typing import Any

import pytest

from corequeue.core.states import Outcome
from corequeue.executor import server
from corequeue.executor.child import ChildConfig
from corequeue.executor.pool import STARTUP_WAIT, ProcessPool, Ready, _Child
from corequeue.executor.task import Task, TaskResult


def child(*, ready: bool) -> _Child:
    # No process behind it: free_slots() and _receive() only look at the bookkeeping.
    process: Any = SimpleNamespace(pid=4242)
    none: Any = None
    return _Child(process=process, conn=none, sock=none, ready=ready)


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> ProcessPool:
    pool = ProcessPool(ChildConfig((), (), ""), max_processes=2, max_pending_per_process=10)
    monkeypatch.setattr(pool, "start", lambda: None)  # no real children
    return pool


def test_a_child_still_starting_has_no_free_slots(pool: ProcessPool) -> None:
    pool.children = [child(ready=False), child(ready=False)]
    assert pool.free_slots() == 0
    assert not pool.has_idle_child()


def test_while_one_child_starts_the_ready_one_takes_one_task_until_durations_are_known(
    pool: ProcessPool,
) -> None:
    ready, starting = child(ready=True), child(ready=False)
    pool.children = [ready, starting]
    assert pool.free_slots() == 1  # a slow job queued here would not move to the other child

    pool.sizing.observe(0.001)  # jobs take 1 ms: max_pending (10) bounds the queue in time already
    assert pool.free_slots() == 10

    pool.start_failures = 3  # earlier children died while starting
    events: list[Any] = []
    pool._receive(starting, ("ready",), events)

    assert starting.ready
    assert events == [Ready(4242)]
    assert pool.free_slots() == 20
    assert pool.start_failures == 0  # a start that worked ends the run of failures


def test_at_the_start_the_first_ready_child_waits_for_the_others_then_goes_alone(
    pool: ProcessPool,
) -> None:
    first, second = child(ready=False), child(ready=False)
    pool.children = [first, second]
    pool._receive(first, ("ready",), [])
    # Children started together are ready within milliseconds of each other: nothing is
    # handed out meanwhile, so the first jobs spread over both from the start.
    wait = pool.startup_wait()
    assert wait is not None and 0 < wait <= STARTUP_WAIT
    assert pool.free_slots() == 0

    pool._first_ready_at = time.monotonic() - STARTUP_WAIT  # the other takes too long
    assert pool.startup_wait() is None
    assert pool.free_slots() == 1  # the ready child goes alone, one task at a time


def test_once_tasks_were_handed_out_a_starting_child_holds_nothing_back(
    pool: ProcessPool,
) -> None:
    first, second = child(ready=False), child(ready=False)
    pool.children = [first, second]
    for c in (first, second):
        pool._receive(c, ("ready",), [])
    assert pool.startup_wait() is None  # all ready: no wait
    first.conn = second.conn = SimpleNamespace(send_bytes=lambda data: None)
    assert pool.submit([Task(1, "lease", "job", "{}", 1, None)]) == []

    pool.children.append(child(ready=False))  # a replacement, starting
    assert pool.startup_wait() is None
    assert pool.free_slots() == 1  # one task at a time while durations are unknown: the second


def test_a_child_that_cannot_start_is_started_again_after_a_doubling_delay(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A child whose imports fail (here a module that does not exist) dies while starting,
    every time: the pool starts the next one 0.1 s later, then 0.2 s, 0.4 s, ... instead of
    respawning it in a tight loop."""
    pool = ProcessPool(ChildConfig(("tests.no_such_module",), (), ""), max_processes=1)
    spawned: list[float] = []
    spawn = pool._spawn

    def counted_spawn() -> _Child:
        spawned.append(time.monotonic())
        return spawn()

    monkeypatch.setattr(pool, "_spawn", counted_spawn)
    caplog.set_level(logging.ERROR, logger="corequeue.worker")
    try:
        deadline = time.monotonic() + 60
        while pool.start_failures < 4 and time.monotonic() < deadline:
            pool.start()
            pool.wait(0.05)

        assert pool.start_failures == 4
        assert len(spawned) == 4
        gaps = [later - earlier for earlier, later in itertools.pairwise(spawned)]
        assert all(gap >= delay for gap, delay in zip(gaps, [0.1, 0.2, 0.4], strict=True))
        assert not pool.children
        respawn = pool.next_respawn()
        assert respawn is not None and 0.0 < respawn <= 0.8
        pool.start()  # too early: nothing is started
        assert len(spawned) == 4
        assert "4 start(s) failed in a row, the next in 0.8s" in caplog.text
    finally:
        pool.close()


def test_a_stop_request_ends_the_starting_of_children_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 18: a worker told to start many children honours SIGTERM between two of them.
    pool = ProcessPool(ChildConfig((), (), ""), max_processes=100_000)
    spawned: list[_Child] = []

    def spawn() -> _Child:
        spawned.append(child(ready=False))
        return spawned[-1]

    monkeypatch.setattr(pool, "_spawn", spawn)
    monkeypatch.setattr(server, "ready", lambda: True)  # the fork server has imported
    pool.start(stop=lambda: len(spawned) >= 3)  # the signal arrives while the third starts
    assert len(pool.children) == 3
    pool.start(stop=lambda: True)
    assert len(pool.children) == 3


class _ExitsAfterSending:
    """A child process that sends its last message, then exits, just as the parent asks whether
    it is still alive (after it read the pipe): the race of a stopping child's last batch."""

    pid = 4242
    exitcode = 0
    sentinel = -1

    def __init__(self, peer: socket.socket, last: tuple[Any, ...]) -> None:
        self.peer, self.last = peer, last

    def is_alive(self) -> bool:
        data = pickle.dumps(self.last)
        self.peer.sendall(struct.pack("!i", len(data)) + data)
        self.peer.close()
        return False

    def join(self, timeout: float | None = None) -> None:
        pass


def test_the_last_results_of_a_child_that_exits_just_after_the_read_are_not_lost(
    pool: ProcessPool,
) -> None:
    ours, theirs = socket.socketpair()
    task = Task(7, "lease", "job", "{}", 1, None)
    done = TaskResult(7, "lease", Outcome.SUCCEEDED, 0.1).wire()
    process: Any = _ExitsAfterSending(theirs, ("done_many", [done]))
    conn: Any = SimpleNamespace(close=lambda: None)
    stopping = _Child(process=process, conn=conn, sock=ours, ready=True, stopping=True)
    stopping.pending[7] = task
    stopping.started[7] = time.monotonic()
    pool.children = [stopping]

    events = pool._drain(stopping)

    # The pipe keeps what a dead child sent: the job succeeded, it is not recorded lost.
    assert [(e.job_id, e.outcome) for e in events if isinstance(e, TaskResult)] == [
        (7, Outcome.SUCCEEDED)
    ]
    assert pool.children == []
