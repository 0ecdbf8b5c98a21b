"""Jobs for the concurrency tests (issue 19): async jobs, and sync ones for threads.

Each records one JSON line per run (``key``, the child's pid, start and end times) in the file
named by ``log``, like testing.reliability_jobs, so a test can count runs and see how many
overlapped in one child.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from corequeue import Job, register_job
from testing.jobs import append_line


def _record(path: str, key: Any, event: str, **extra: Any) -> None:
    append_line(path, {"key": key, "event": event, "pid": os.getpid(), "at": time.time(), **extra})


async def _gate(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@register_job
class AsyncSleep(Job):
    """Records its start, awaits until the file ``gate`` exists (if given) then ``seconds``,
    records its end (or "stopped" when cancelled), returns its key."""

    def __init__(self, log: str, key: Any, seconds: float = 0.0, gate: str | None = None):
        self.log = log
        self.key = key
        self.seconds = seconds
        self.gate = gate

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    async def run(self) -> Any:
        _record(self.log, self.key, "start")
        try:
            if self.gate is not None:
                await _gate(self.gate)
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:  # a timeout or a cancel: the child stopped it
            _record(self.log, self.key, "stopped")
            raise
        _record(self.log, self.key, "end")
        return self.key


@register_job
class ThreadSleep(Job):
    """Sync: records its start, sleeps ``seconds`` (or until the file ``gate`` exists),
    records its end, returns its key."""

    def __init__(self, log: str, key: Any, seconds: float = 0.0, gate: str | None = None):
        self.log = log
        self.key = key
        self.seconds = seconds
        self.gate = gate

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> Any:
        _record(self.log, self.key, "start", thread=True)
        deadline = time.monotonic() + 60
        while self.gate is not None and not Path(self.gate).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        time.sleep(self.seconds)
        _record(self.log, self.key, "end", thread=True)
        return self.key


@register_job
class Alone(Job):
    """``exclusive``: never shares its child. Records start and end around ``seconds``."""

    exclusive = True

    def __init__(self, log: str, key: Any, seconds: float = 0.2):
        self.log = log
        self.key = key
        self.seconds = seconds

    def run(self) -> Any:
        _record(self.log, self.key, "start")
        time.sleep(self.seconds)
        _record(self.log, self.key, "end")
        return self.key
