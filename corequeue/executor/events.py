"""What the pool reports from its children, and the results of tasks the pool ends itself."""

from __future__ import annotations

import pickle
import signal
import struct
from dataclasses import dataclass
from typing import Any

from corequeue.core.states import Outcome
from corequeue.executor.task import Task, TaskResult


@dataclass(frozen=True, slots=True)
class Released:
    """Tasks that go back without using an attempt: handed to a child that never started
    them, or started beside a job whose child the pool killed (not theirs the fault)."""

    tasks: tuple[Task, ...]


@dataclass(frozen=True, slots=True)
class Ready:
    """A child finished starting (imports, configuration) and takes tasks from now on."""

    pid: int | None


#: What the pool reports from its children.
Event = TaskResult | Released | Ready


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "the child process stopped responding"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the child process was killed by {name}"
    return f"the child process exited with code {exitcode}"


def ended_here(task: Task, outcome: Outcome, duration: float, why: str, shared: bool) -> TaskResult:
    """The result of a task the pool ended (its child could not say how it ended)."""
    error_type = {
        Outcome.LOST: "ChildProcessLost",
        Outcome.TIMED_OUT: "JobTimeout",
        Outcome.CANCELLED: "JobCancelled",
    }.get(outcome, outcome.value)
    # retry_delay None: the worker decides (the child could not ask the job).
    return TaskResult(
        task.job_id,
        task.lease,
        outcome,
        duration,
        error_type=error_type,
        error_message=why,
        retry_delay=None,
        crash_shared=shared,
    )


def frames(inbox: bytearray) -> tuple[list[Any], int]:
    """The whole messages at the start of ``inbox`` and how many bytes they took. Frames as
    multiprocessing.Connection writes them: a 4-byte big-endian signed length (-1: an 8-byte
    length follows), then the pickle."""
    messages: list[Any] = []
    pos, size = 0, len(inbox)
    with memoryview(inbox) as view:  # slices of it copy nothing (released before return)
        while size - pos >= 4:
            (n,) = _LENGTH.unpack_from(inbox, pos)
            start = pos + 4
            if n == -1:
                if size - pos < 12:
                    break
                (n,) = _LONG_LENGTH.unpack_from(inbox, pos + 4)
                start = pos + 12
            if size - start < n:
                break
            messages.append(pickle.loads(view[start : start + n]))
            pos = start + n
    return messages, pos


_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")
