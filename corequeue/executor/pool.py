"""A pool of spawned child processes that run tasks, with timeouts, crashes and recycling.

The parent keeps, per child, the tasks it has handed over in order. The first is the one
running: it started when it was sent to an idle child, or when the result before it arrived.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from corequeue.core.states import Outcome
from corequeue.executor.child import ChildConfig, child_main
from corequeue.executor.task import Task, TaskResult

_ctx = multiprocessing.get_context("spawn")


@dataclass(frozen=True, slots=True)
class Released:
    """Tasks handed to a child that never started them: they go back without using an attempt."""

    tasks: tuple[Task, ...]


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    pending: deque[Task] = field(default_factory=deque)
    head_started: float = 0.0
    assigned: int = 0
    stopping: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid


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


class ProcessPool:
    def __init__(
        self,
        config: ChildConfig,
        *,
        max_processes: int = 2,
        max_jobs_per_process: int = 0,
        max_pending_per_process: int = 10,
    ) -> None:
        self.config = config
        self.max_processes = max_processes
        self.max_jobs_per_process = max_jobs_per_process
        self.max_pending = max_pending_per_process
        self.children: list[_Child] = []
        self.replaced = 0  # children that died with work and were replaced
        self.closing = False

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        while not self.closing and len(self.children) < self.max_processes:
            self.children.append(self._spawn())

    def _spawn(self) -> _Child:
        parent_conn, child_conn = _ctx.Pipe()
        process = _ctx.Process(
            target=child_main, args=(child_conn, self.config), name="corequeue-child", daemon=True
        )
        process.start()
        child_conn.close()
        return _Child(process, parent_conn)

    def _accepting(self, child: _Child) -> bool:
        if child.stopping:
            return False
        return not (self.max_jobs_per_process and child.assigned >= self.max_jobs_per_process)

    # -- hand-off ---------------------------------------------------------------------------

    def free_slots(self) -> int:
        self.start()
        free = 0
        for child in self.children:
            if self._accepting(child):
                room = self.max_pending - len(child.pending)
                if self.max_jobs_per_process:
                    room = min(room, self.max_jobs_per_process - child.assigned)
                free += max(room, 0)
        return free

    @property
    def running(self) -> int:
        return sum(len(c.pending) for c in self.children)

    def tasks(self) -> list[Task]:
        return [t for c in self.children for t in c.pending]

    def submit(self, tasks: Sequence[Task]) -> None:
        """Hand tasks to the least-loaded children, one message per child."""
        batches: dict[int, list[Task]] = {}
        for task in tasks:
            candidates = [c for c in self.children if self._accepting(c)]
            candidates = [
                c
                for c in candidates
                if len(c.pending) + len(batches.get(id(c), ())) < self.max_pending
                and (
                    not self.max_jobs_per_process
                    or c.assigned + len(batches.get(id(c), ())) < self.max_jobs_per_process
                )
            ]
            if not candidates:
                raise RuntimeError("submit() given more tasks than free_slots() allowed")
            child = min(candidates, key=lambda c: len(c.pending) + len(batches.get(id(c), ())))
            batches.setdefault(id(child), []).append(task)
        now = time.monotonic()
        for child in self.children:
            batch = batches.get(id(child))
            if not batch:
                continue
            if not child.pending:
                child.head_started = now
            child.pending.extend(batch)
            child.assigned += len(batch)
            try:
                child.conn.send(("run", batch))
            except (BrokenPipeError, OSError):
                pass  # the child died: wait() reports it through its sentinel

    # -- events -----------------------------------------------------------------------------

    def wait(self, timeout: float | None, extra: Sequence[Any] = ()) -> list[TaskResult | Released]:
        """Wait up to ``timeout`` for results, deaths or a ready ``extra`` waitable; return
        what happened (results, and Released for tasks that will not run)."""
        waitables: list[Any] = list(extra)
        for child in self.children:
            waitables.append(child.conn)
            waitables.append(child.process.sentinel)
        ready = set(wait(waitables, timeout)) if waitables else set()
        return self.collect(ready)

    def collect(self, ready: set[Any] | None = None) -> list[TaskResult | Released]:
        events: list[TaskResult | Released] = []
        for child in list(self.children):
            if ready is None or child.conn in ready or child.process.sentinel in ready:
                events.extend(self._drain(child))
        self._retire_recycled()
        return events

    def _drain(self, child: _Child) -> list[TaskResult | Released]:
        events: list[TaskResult | Released] = []
        try:
            while child.conn.poll():
                message = child.conn.recv()
                if message[0] == "done":
                    result: TaskResult = message[1]
                    if child.pending and child.pending[0].job_id == result.job_id:
                        child.pending.popleft()
                    child.head_started = time.monotonic()
                    events.append(result)
                elif message[0] == "released":
                    ids = set(message[1])
                    gone = tuple(t for t in child.pending if t.job_id in ids)
                    child.pending = deque(t for t in child.pending if t.job_id not in ids)
                    events.append(Released(gone))
        except (EOFError, OSError):
            pass
        if not child.process.is_alive():
            events.extend(self._bury(child, describe_exit(child.process.exitcode)))
        return events

    def _bury(
        self, child: _Child, why: str, outcome: Outcome = Outcome.LOST
    ) -> list[TaskResult | Released]:
        """A child is gone: its running task ends with ``outcome``, the rest go back."""
        events: list[TaskResult | Released] = []
        child.process.join(timeout=5)
        child.conn.close()
        self.children.remove(child)
        if child.pending and not child.stopping:
            self.replaced += 1
        if child.pending:
            head = child.pending.popleft()
            duration = time.monotonic() - child.head_started
            events.append(
                TaskResult(
                    head.job_id,
                    head.lease,
                    outcome,
                    duration,
                    error_type={
                        Outcome.LOST: "ChildProcessLost",
                        Outcome.TIMED_OUT: "JobTimeout",
                        Outcome.CANCELLED: "JobCancelled",
                    }.get(outcome, outcome.value),
                    error_message=why,
                    retry_delay=-1.0,  # the worker decides: the child could not ask the job
                )
            )
        if child.pending:
            events.append(Released(tuple(child.pending)))
            child.pending.clear()
        return events

    def _retire_recycled(self) -> None:
        for child in list(self.children):
            if (
                self.max_jobs_per_process
                and child.assigned >= self.max_jobs_per_process
                and not child.pending
                and not child.stopping
            ):
                child.stopping = True
                try:
                    child.conn.send(("stop",))
                except OSError:
                    pass
                child.process.join(timeout=5)
                if child.process.is_alive():
                    child.process.kill()
                    child.process.join()
                child.conn.close()
                self.children.remove(child)

    def check_timeouts(self) -> list[TaskResult | Released]:
        """Kill children whose running task is past its timeout."""
        events: list[TaskResult | Released] = []
        now = time.monotonic()
        for child in list(self.children):
            if child.pending and child.pending[0].timeout is not None:
                head = child.pending[0]
                assert head.timeout is not None
                if now - child.head_started > head.timeout:
                    why = f"the job ran past its timeout of {head.timeout:g}s"
                    events.extend(self._kill(child, Outcome.TIMED_OUT, why))
        return events

    def next_deadline(self) -> float | None:
        """Seconds until the earliest running task's timeout (None when none has one)."""
        deadlines = [
            c.head_started + c.pending[0].timeout - time.monotonic()
            for c in self.children
            if c.pending and c.pending[0].timeout is not None
        ]
        return max(min(deadlines), 0.0) if deadlines else None

    def cancel(self, job_ids: set[int]) -> list[TaskResult | Released]:
        """Stop the children running these jobs (cancelled or no longer ours)."""
        events: list[TaskResult | Released] = []
        for child in list(self.children):
            # An unstarted one stays queued in its child: when it runs, its result is refused
            # by the lease check, so only a running one needs its child stopped.
            if child.pending and child.pending[0].job_id in job_ids:
                events.extend(self._kill(child, Outcome.CANCELLED, "the job was cancelled"))
        return events

    def _kill(self, child: _Child, outcome: Outcome, why: str) -> list[TaskResult | Released]:
        child.process.kill()
        child.process.join(timeout=5)
        return self._bury(child, why, outcome)

    def stop_accepting(self) -> list[TaskResult | Released]:
        """Ask every child to finish its running task and give back the rest."""
        self.closing = True
        for child in self.children:
            if not child.stopping:
                child.stopping = True
                try:
                    child.conn.send(("stop",))
                except OSError:
                    pass
        return []

    def kill_all(self, why: str) -> list[TaskResult | Released]:
        events: list[TaskResult | Released] = []
        for child in list(self.children):
            events.extend(self._kill(child, Outcome.LOST, why))
        return events

    def close(self) -> None:
        self.closing = True
        for child in list(self.children):
            try:
                child.conn.send(("stop",))
            except OSError:
                pass
        for child in list(self.children):
            child.process.join(timeout=5)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            child.conn.close()
        self.children.clear()
