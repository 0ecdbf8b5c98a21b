"""Jobs that the end-to-end tests enqueue and real worker processes run (``--import testing.jobs``).

Each run that matters appends one JSON line to a file whose path is a job parameter: the
job's ``key``, the child's pid, the worker's pid (the child's parent) and the wall-clock time.
A single ``write()`` on a file opened with O_APPEND is atomic for lines this short, so several
workers can share one file. ``runs(path)`` reads the lines back.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corequeue import DeferJob, Job, register_job


def worker_pid() -> int:
    """The worker's pid (a job's process is a child of the worker's fork server)."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid is not None else os.getppid()


def append_line(path: str, line: dict[str, Any]) -> None:
    """Append ``line`` as one JSON line with a single write (safe across processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def record(path: str, key: Any, **extra: Any) -> None:
    append_line(
        path, {"key": key, "pid": os.getpid(), "ppid": worker_pid(), "at": time.time(), **extra}
    )


def wait_for_gate(path: str | Path, timeout: float = 60.0) -> None:
    """Block until the file ``path`` exists (at most ``timeout`` seconds): a test holds a job,
    or a child's start-up, until it has arranged what it checks."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def runs(path: str | Path) -> list[dict[str, Any]]:
    """The runs recorded in ``path``, in the order they happened (empty if none yet; a run
    cut short by a kill mid-write is skipped)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in map(str.strip, text.splitlines()) if line.endswith("}")]


@register_job(alias="record")
class Record(Job):
    """Records its run (after sleeping ``sleep`` seconds) and returns its key."""

    def __init__(self, path: str, key: Any, sleep: float = 0.0):
        self.path = path
        self.key = key
        self.sleep = sleep

    def run(self) -> Any:
        if self.sleep:
            time.sleep(self.sleep)
        record(self.path, self.key)
        return self.key


@register_job
class Echo(Job):
    """Returns its parameter, as the worker decoded it."""

    def __init__(self, value: Any):
        self.value = value

    def run(self) -> Any:
        return self.value


@register_job
class Add(Job):
    def __init__(self, a: int, b: int):
        self.a, self.b = a, b

    def run(self) -> int:
        return self.a + self.b


@register_job
class Sleep(Job):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def run(self) -> float:
        time.sleep(self.seconds)
        return self.seconds


@register_job
class Fail(Job):
    """Records its run, then raises; retried at once."""

    def __init__(self, path: str, key: Any):
        self.path = path
        self.key = key

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> None:
        record(self.path, self.key)
        raise RuntimeError(f"boom {self.key}")


@register_job
class DelayedRetry(Fail):
    """Like Fail, but each retry waits one second."""

    def retry_delay(self, attempt: int) -> float:
        return 1.0


@register_job
class DeferTimes(Job):
    """Defers itself ``times`` times (counted in its file), then succeeds."""

    def __init__(self, path: str, key: Any, times: int, increment_retries: bool = False):
        self.path = path
        self.key = key
        self.times = times
        self.increment_retries = increment_retries

    def run(self) -> str:
        before = sum(1 for r in runs(self.path) if r["key"] == self.key)
        record(self.path, self.key)
        if before < self.times:
            raise DeferJob(delay=0, increment_retries=self.increment_retries)
        return "done"


@register_job
class EnqueueRecord(Job):
    """Enqueues a Record job from inside the worker's child process."""

    def __init__(self, path: str, key: Any):
        self.path = path
        self.key = key

    def run(self) -> int:
        return Record(self.path, self.key).run_in_worker(priority=1).id


class WrapResult:
    """Middleware (configured by dotted path): wraps every job's return value."""

    def __init__(self, run_job: Callable[[Job], Any]) -> None:
        self.run_job = run_job

    def __call__(self, job: Job) -> Any:
        return {"wrapped": self.run_job(job), "by": "testing.jobs.WrapResult"}
