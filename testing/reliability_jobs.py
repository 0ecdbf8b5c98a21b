"""Jobs for the fault-injection tests (workers run with ``--import testing.reliability_jobs``).

Every job appends one JSON line per run to the file named by its ``log`` parameter, before
doing anything else: its ``key``, the child's pid and the worker's pid (the child's parent).
One ``os.write`` on an O_APPEND file is atomic for lines this short, so workers can share it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from corequeue import DeferJob, Job, register_job
from testing.jobs import append_line, runs, wait_for_gate, worker_pid


def record(path: str, key: Any, **extra: Any) -> None:
    append_line(
        path, {"key": key, "pid": os.getpid(), "worker": worker_pid(), "at": time.time(), **extra}
    )


def run_counts(path: str | Path) -> Counter[Any]:
    return Counter(r["key"] for r in runs(path))


@register_job
class Gated(Job):
    """Records its run, waits until the file ``gate`` exists (at most a minute), returns its
    key: a test holds the children's first jobs while it arranges a fault."""

    def __init__(self, log: str, key: Any, gate: str):
        self.log = log
        self.key = key
        self.gate = gate

    def run(self) -> Any:
        record(self.log, self.key)
        wait_for_gate(self.gate)
        return self.key


@register_job(alias="rel-touch")
class Touch(Job):
    """Records its run, sleeps ``seconds``, returns its key."""

    def __init__(self, log: str, key: Any, seconds: float = 0.0):
        self.log = log
        self.key = key
        self.seconds = seconds

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> Any:
        record(self.log, self.key)
        if self.seconds:
            time.sleep(self.seconds)
        return self.key


@register_job(alias="rel-crash")
class Crash(Job):
    """Records its run, then dies as ``how`` says on its first run only (a marker file next to
    the log remembers), so a retry succeeds: ``segfault``, ``exit3``, ``hang`` (sleeps until
    killed or timed out), ``hang-always``."""

    def __init__(self, log: str, key: Any, how: str):
        self.log = log
        self.key = key
        self.how = how

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> Any:
        record(self.log, self.key, how=self.how)
        marker = Path(f"{self.log}.{self.key}.done")
        if marker.exists() and self.how != "hang-always":
            return self.key
        marker.touch()
        if self.how == "segfault":
            ctypes.string_at(0)
        elif self.how == "sigsegv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif self.how == "exit3":
            os._exit(3)
        elif self.how.startswith("hang"):
            time.sleep(600)
        return self.key


@register_job(alias="rel-raise")
class RaiseBase(Job):
    """Raises SystemExit or KeyboardInterrupt from run()."""

    def __init__(self, kind: str):
        self.kind = kind

    def run(self) -> Any:
        if self.kind == "SystemExit":
            raise SystemExit(4)
        raise KeyboardInterrupt("interrupted inside the job")


@register_job(alias="rel-defer-forever")
class DeferForever(Job):
    """Records its run, then defers itself at once without using an attempt, every time."""

    def __init__(self, log: str, key: Any):
        self.log = log
        self.key = key

    def run(self) -> Any:
        record(self.log, self.key)
        raise DeferJob(delay=0)


class BadMessage(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


@register_job(alias="rel-bad-message")
class RaiseBadMessage(Job):
    """Raises an exception whose ``__str__`` raises."""

    def __init__(self, log: str, key: Any):
        self.log = log
        self.key = key

    def run(self) -> Any:
        record(self.log, self.key)
        raise BadMessage()
