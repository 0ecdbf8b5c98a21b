"""Offload: one call at a time off the caller's thread, its outcome collected later."""

from __future__ import annotations

import select
import threading

import pytest

from corequeue.worker.offload import Offload


def _readable(offload: Offload, timeout: float) -> bool:
    ready, _, _ = select.select([offload.done], [], [], timeout)
    return bool(ready)


def test_a_threaded_call_runs_on_another_thread_and_its_outcome_is_taken_once() -> None:
    offload = Offload(threaded=True)
    release = threading.Event()
    threads: list[str] = []

    def call() -> int:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return 42

    assert offload.start(call) is False  # not finished yet: it runs in the background
    assert offload.busy
    assert offload.take() is None  # still running
    release.set()

    assert _readable(offload, 10)  # the done pipe wakes a select() on it
    assert offload.take(timeout=10) == (42, None)
    assert not offload.busy
    assert offload.take() is None  # taken once
    assert threads == ["corequeue-db"]
    offload.close()


def test_an_exception_is_handed_to_the_caller_not_raised_in_the_thread() -> None:
    offload = Offload(threaded=True)
    error = ValueError("boom")

    def call() -> None:
        raise error

    offload.start(call)

    assert offload.take(timeout=10) == (None, error)
    offload.close()


def test_inline_and_unthreaded_calls_run_at_once_in_the_callers_thread() -> None:
    caller = threading.current_thread().name
    for offload, inline in ((Offload(threaded=True), True), (Offload(threaded=False), False)):
        assert offload.start(lambda: threading.current_thread().name, inline=inline) is True
        assert _readable(offload, 0)
        assert offload.take() == (caller, None)
        offload.close()


def test_a_second_call_before_the_first_outcome_is_taken_is_refused() -> None:
    offload = Offload(threaded=False)
    offload.start(lambda: 1)

    with pytest.raises(RuntimeError, match="not taken"):
        offload.start(lambda: 2)
    offload.close()
