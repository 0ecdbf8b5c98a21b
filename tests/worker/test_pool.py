"""The pool hands tasks only to children that have started (said "ready")."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from corequeue.executor.child import ChildConfig
from corequeue.executor.pool import ProcessPool, Ready, _Child


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

    pool._observe(0.001)  # jobs take 1 ms: max_pending (10) bounds the queue in time already
    assert pool.free_slots() == 10

    events: list[Any] = []
    pool._receive(starting, ("ready",), events)

    assert starting.ready
    assert events == [Ready(4242)]
    assert pool.free_slots() == 20
