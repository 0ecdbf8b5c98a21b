"""A pool of spawned child processes that run tasks, with timeouts, crashes and recycling.

The parent keeps, per child, the tasks it has handed over in order. The first is the one
running once the child says so (``("started", job id)``): timeouts count from that message, not
from the hand-off, so a parent slow to read results never makes a job look older than it is.
A child gets tasks only once it says it is ready (``("ready",)``, after its imports): jobs are
not claimed for children still starting, where they would sit ``running`` with nobody running
them while an idle worker elsewhere could.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import pickle
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from corequeue.config import Settings
from corequeue.core.states import Outcome
from corequeue.executor.child import ChildConfig, child_main
from corequeue.executor.task import Task, TaskResult

_ctx = multiprocessing.get_context("spawn")
log = logging.getLogger("corequeue.worker")

#: Work to keep queued per child, in seconds of the jobs' mean duration (see max_pending).
QUEUED_SECONDS = 0.05
#: Tasks a child may have queued before any job's duration is known.
INITIAL_PENDING = 10
#: When the pool starts, the first child ready waits up to this many seconds for the others
#: before any task is handed out (see ProcessPool.startup_wait).
STARTUP_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class Released:
    """Tasks handed to a child that never started them: they go back without using an attempt."""

    tasks: tuple[Task, ...]


@dataclass(frozen=True, slots=True)
class Ready:
    """A child finished starting (imports, configuration) and takes tasks from now on."""

    pid: int | None


#: What the pool reports from its children.
Event = TaskResult | Released | Ready

#: Bytes read from a child's pipe at once (its results, many per read under load).
READ_SIZE = 1 << 18

#: After a child dies while starting, the next one starts this many seconds later, twice as
#: long after each further failure in a row, at most RESPAWN_DELAY_MAX: a child that cannot
#: start (an import that fails only there, say) is not respawned in a tight loop.
RESPAWN_DELAY_MIN = 0.1
RESPAWN_DELAY_MAX = 30.0


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    sock: socket.socket  # the same pipe, for reads that never block (MSG_DONTWAIT)
    inbox: bytearray = field(default_factory=bytearray)  # bytes read, not a whole message yet
    pending: deque[Task] = field(default_factory=deque)
    head_started: float = 0.0  # monotonic time the child reported starting the head task
    running: int | None = None  # job id of the head task once the child started it
    assigned: int = 0
    stopping: bool = False
    ready: bool = False  # started up: takes tasks (none are handed to a child still starting)

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
        max_processes: int = Settings.max_processes,
        max_jobs_per_process: int = Settings.max_jobs_per_process,
        max_pending_per_process: int = Settings.max_pending_per_process,
    ) -> None:
        """The limits default to :class:`~corequeue.config.Settings`' (defined there only)."""
        self.config = config
        self.max_processes = max_processes
        self.max_jobs_per_process = max_jobs_per_process
        self.max_pending_cap = max_pending_per_process
        self._mean_duration: float | None = None  # moving average of job durations
        self.children: list[_Child] = []
        self.replaced = 0  # children that died with work and were replaced
        self.closing = False
        # One poll object for the pool's whole life (multiprocessing's wait() builds a selector
        # and registers every file descriptor on each call).
        self._poller = select.poll()
        self._extra: dict[int, Any] = {}  # registered waitables of the caller, by fd
        self.start_failures = 0  # children that died while starting, in a row
        self._respawn_at = 0.0  # monotonic time before which no child is started
        self._first_ready_at: float | None = None  # monotonic time the first child was ready
        self._handed_out = False  # whether any task was handed to a child yet

    def next_respawn(self) -> float | None:
        """Seconds until a child that is missing may be started (None: none is waiting)."""
        if len(self.children) >= self.max_processes or self.closing:
            return None
        return max(self._respawn_at - time.monotonic(), 0.0)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, stop: Callable[[], bool] | None = None) -> None:
        """Start the children that are missing (unless a failed start's delay is running).
        The worker calls it each time round its loop: the one place children are replaced.
        ``stop`` is asked before each child: a stop signal ends the starting at once."""
        while not self.closing and len(self.children) < self.max_processes:
            if time.monotonic() < self._respawn_at or (stop is not None and stop()):
                return
            self.children.append(self._spawn())

    def _spawn(self) -> _Child:
        parent_conn, child_conn = _ctx.Pipe()
        process = _ctx.Process(
            target=child_main, args=(child_conn, self.config), name="corequeue-child", daemon=True
        )
        process.start()
        child_conn.close()
        # Pipe() is a socketpair on Unix: a duplicate descriptor as a socket object lets the
        # parent read whatever has arrived in one call, without blocking.
        sock = socket.socket(fileno=os.dup(parent_conn.fileno()))
        self._poller.register(sock.fileno(), select.POLLIN)
        self._poller.register(process.sentinel, select.POLLIN)
        return _Child(process, parent_conn, sock)

    def _forget(self, child: _Child) -> None:
        """Stop watching a child that is gone or leaving, and close its pipe."""
        for fd in (child.sock.fileno(), child.process.sentinel):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poller.unregister(fd)
        child.sock.close()
        child.conn.close()
        if child in self.children:
            self.children.remove(child)

    def _accepting(self, child: _Child) -> bool:
        if child.stopping or not child.ready:
            return False
        return not (self.max_jobs_per_process and child.assigned >= self.max_jobs_per_process)

    # -- hand-off ---------------------------------------------------------------------------

    @property
    def max_pending(self) -> int:
        """How many tasks a child may have queued: about :data:`QUEUED_SECONDS` of work at the
        jobs' recent mean duration, between 1 and ``max_pending_per_process``. Fast jobs are
        handed over (and claimed) in large batches; slow ones are not hoarded by one child
        while other workers sit idle."""
        cap = self.max_pending_cap
        if self._mean_duration is None:
            return min(cap, INITIAL_PENDING)
        return max(1, min(cap, int(QUEUED_SECONDS / max(self._mean_duration, 1e-6))))

    def _observe(self, duration: float) -> None:
        mean = self._mean_duration
        self._mean_duration = duration if mean is None else mean + 0.05 * (duration - mean)

    def startup_wait(self) -> float | None:
        """Seconds the pool still holds back its first tasks (None: it does not).

        Children started together finish their imports within tens of milliseconds of each
        other. Until every one is ready (or ``STARTUP_WAIT`` after the first), no task is
        handed out: the first jobs spread over all the children from the start, instead of
        queueing one at a time on the first child while the others import on the same CPUs.
        Only at the pool's start: a child replaced later never holds the others back."""
        if self._handed_out or self._first_ready_at is None:
            return None
        if not any(not c.ready and not c.stopping for c in self.children):
            return None
        left = self._first_ready_at + STARTUP_WAIT - time.monotonic()
        return left if left > 0 else None

    def free_slots(self) -> int:
        """Room for tasks in the children that are ready (none while :meth:`startup_wait`
        holds the first tasks back). While another child is still starting and no job's
        duration is known yet, a ready child takes one task at a time: slow jobs queued in
        the first child to start would not move to the others once they are up (once
        durations are known, ``max_pending`` keeps slow jobs from queueing)."""
        if self.startup_wait() is not None:
            return 0
        starting = any(not c.ready and not c.stopping for c in self.children)
        target = 1 if starting and self._mean_duration is None else self.max_pending
        free = 0
        for child in self.children:
            if self._accepting(child):
                room = target - len(child.pending)
                if self.max_jobs_per_process:
                    room = min(room, self.max_jobs_per_process - child.assigned)
                free += max(room, 0)
        return free

    def has_idle_child(self) -> bool:
        """Whether a child that accepts work has nothing queued (it would sit idle)."""
        return any(self._accepting(c) and not c.pending for c in self.children)

    @property
    def running(self) -> int:
        return sum(len(c.pending) for c in self.children)

    def tasks(self) -> list[Task]:
        return [t for c in self.children for t in c.pending]

    def submit(self, tasks: Sequence[Task]) -> list[Task]:
        """Hand tasks to the least-loaded children, one message per child. Returns the tasks
        no child could take (every child stopping, or at its ``max_jobs_per_process``): the
        caller gives them back. ``max_pending`` is a target here, not a limit: the tasks were
        claimed for slots that were free then, and the mean duration may have moved since."""
        load = {id(c): len(c.pending) for c in self.children if self._accepting(c)}
        room = {
            id(c): (self.max_jobs_per_process - c.assigned if self.max_jobs_per_process else -1)
            for c in self.children
            if id(c) in load
        }
        batches: dict[int, list[Task]] = {key: [] for key in load}
        left: list[Task] = []
        open_ = [key for key in load if room[key] != 0]  # children that take more (-1: no limit)
        for task in tasks:
            if not open_:
                left.append(task)
                continue
            key = min(open_, key=load.__getitem__)
            batches[key].append(task)
            load[key] += 1
            room[key] -= 1
            if room[key] == 0:
                open_.remove(key)
        for child in self.children:
            batch = batches.get(id(child))
            if not batch:
                continue
            child.pending.extend(batch)
            child.assigned += len(batch)
            self._handed_out = True
            # A dead child's pipe refuses: wait() reports the death through its sentinel.
            with contextlib.suppress(OSError):
                _send(child, ("run", [tuple(t) for t in batch]))
        return left

    # -- events -----------------------------------------------------------------------------

    def wait(self, timeout: float | None, extra: Sequence[Any] = ()) -> list[Event]:
        """Wait up to ``timeout`` for results, deaths or a ready ``extra`` waitable (objects
        with ``fileno()``); return what happened (results, and Released for tasks that will
        not run)."""
        wanted = {obj.fileno(): obj for obj in extra}
        for fd in set(self._extra) - set(wanted):
            self._poller.unregister(fd)
            del self._extra[fd]
        for fd, obj in wanted.items():
            if fd not in self._extra:
                self._poller.register(fd, select.POLLIN)
                self._extra[fd] = obj
        ms = None if timeout is None else math.ceil(max(timeout, 0.0) * 1000)
        ready = {fd for fd, _ in self._poller.poll(ms)}
        return self.collect(ready)

    def collect(self, ready: set[int] | None = None) -> list[Event]:
        """What the children (those whose file descriptors are in ``ready``; all by default)
        have reported."""
        events: list[Event] = []
        for child in list(self.children):
            if ready is None or child.sock.fileno() in ready or child.process.sentinel in ready:
                events.extend(self._drain(child))
        self._retire_recycled()
        return events

    def _drain(self, child: _Child) -> list[Event]:
        events = self._read(child)
        if not child.process.is_alive():
            events.extend(self._bury(child, describe_exit(child.process.exitcode)))
        return events

    def _read(self, child: _Child) -> list[Event]:
        """The messages ``child`` has sent so far (also after it died: the pipe keeps them)."""
        events: list[Event] = []
        inbox = child.inbox
        while True:
            try:
                chunk = child.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # reset by a dying child: what arrived before is in the inbox
                break
            if not chunk:
                break
            inbox += chunk
            if len(chunk) < READ_SIZE:
                break
        # Frames as multiprocessing.Connection writes them: a 4-byte big-endian signed length
        # (-1: an 8-byte length follows), then the pickle.
        pos, size = 0, len(inbox)
        while size - pos >= 4:
            n = int.from_bytes(inbox[pos : pos + 4], "big", signed=True)
            start = pos + 4
            if n == -1:
                if size - pos < 12:
                    break
                n = int.from_bytes(inbox[pos + 4 : pos + 12], "big")
                start = pos + 12
            if size - start < n:
                break
            self._receive(child, pickle.loads(inbox[start : start + n]), events)
            pos = start + n
        del inbox[:pos]
        return events

    def _receive(self, child: _Child, message: Any, events: list[Event]) -> None:
        kind = message[0]
        if kind == "ready":
            child.ready = True
            self.start_failures = 0
            if self._first_ready_at is None:
                self._first_ready_at = time.monotonic()
            events.append(Ready(child.pid))
        elif kind == "started":
            if child.pending and child.pending[0].job_id == message[1]:
                child.running = message[1]
                child.head_started = time.monotonic()
        elif kind == "done" or kind == "next":
            result = TaskResult.from_wire(message[1])
            self._observe(result.duration)
            if child.pending and child.pending[0].job_id == result.job_id:
                child.pending.popleft()
            child.running = None
            events.append(result)
            if kind == "next" and child.pending and child.pending[0].job_id == message[2]:
                child.running = message[2]
                child.head_started = time.monotonic()
        elif kind == "released":
            ids = set(message[1])
            gone = tuple(t for t in child.pending if t.job_id in ids)
            child.pending = deque(t for t in child.pending if t.job_id not in ids)
            events.append(Released(gone))

    def _started(self, child: _Child) -> Task | None:
        """The task ``child`` is running (None when idle or not started yet)."""
        if child.pending and child.running == child.pending[0].job_id:
            return child.pending[0]
        return None

    def _bury(
        self,
        child: _Child,
        why: str,
        outcome: Outcome = Outcome.LOST,
        *,
        killed: bool = False,
    ) -> list[Event]:
        """A child is gone: its running task ends with ``outcome``, the rest go back.

        ``killed``: we killed it, so an unstarted head goes back too. A child that died on its
        own is charged with its head even before reporting it started (a job that kills its child
        before the "started" message is read): releasing it uncounted could loop forever,
        while a used attempt shows the cause and ends in failure. A child that dies while
        starting has no tasks (none are handed to it before it is ready): that is logged.
        """
        events: list[Event] = []
        child.process.join(timeout=5)
        self._forget(child)
        if not child.ready and not child.stopping:
            self.start_failures += 1
            delay = min(RESPAWN_DELAY_MIN * 2 ** (self.start_failures - 1), RESPAWN_DELAY_MAX)
            self._respawn_at = time.monotonic() + delay
            log.error(
                "child process pid=%s exited while starting (%s); no job had been handed to "
                "it; %d start(s) failed in a row, the next in %.1fs",
                child.pid,
                why,
                self.start_failures,
                delay,
            )
        if child.pending and not child.stopping:
            self.replaced += 1
        started = self._started(child) is not None
        if child.pending and (started or not killed):
            head = child.pending.popleft()
            duration = time.monotonic() - child.head_started if started else 0.0
            if not started:
                why += " (before the job started)"
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
                    retry_delay=None,  # the worker decides: the child could not ask the job
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
                with contextlib.suppress(OSError):
                    _send(child, ("stop",))
                child.process.join(timeout=5)
                if child.process.is_alive():
                    child.process.kill()
                    child.process.join()
                self._forget(child)

    def check_timeouts(self) -> list[Event]:
        """Kill children whose running task is past its timeout."""
        events: list[Event] = []
        now = time.monotonic()
        for child in list(self.children):
            head = self._started(child)
            if (
                head is not None
                and head.timeout is not None
                and now - child.head_started > head.timeout
            ):
                why = f"the job ran past its timeout of {head.timeout:g}s"
                events.extend(self._kill(child, Outcome.TIMED_OUT, why))
        return events

    def next_deadline(self) -> float | None:
        """Seconds until the earliest running task's timeout (None when none has one)."""
        deadlines = []
        for c in self.children:
            head = self._started(c)
            if head is not None and head.timeout is not None:
                deadlines.append(c.head_started + head.timeout - time.monotonic())
        return max(min(deadlines), 0.0) if deadlines else None

    def cancel(self, job_ids: set[int]) -> list[Event]:
        """Stop the children running these jobs (cancelled or no longer ours)."""
        events: list[Event] = []
        for child in list(self.children):
            events.extend(self._read(child))  # a "started" may be waiting in the pipe
            head = self._started(child)
            if head is not None and head.job_id in job_ids:
                events.extend(self._kill(child, Outcome.CANCELLED, "the job was cancelled"))
                continue
            # Unstarted ones must not run: the child drops them and answers "released" (if it
            # started one meanwhile, the next check finds it running and stops the child).
            queued = [t.job_id for t in child.pending if t.job_id in job_ids]
            if queued:
                with contextlib.suppress(OSError):  # a dead child is reported by wait()
                    _send(child, ("skip", queued))
        return events

    def _kill(self, child: _Child, outcome: Outcome, why: str) -> list[Event]:
        """Kill ``child``; its running task ends with ``outcome``. Messages it sent before
        dying are read first: a task that finished in the meantime keeps its result, and a
        task started after it ends ``lost`` instead (it was not the one meant)."""
        target = self._started(child)
        child.process.kill()
        child.process.join(timeout=5)
        events = self._read(child)
        head = self._started(child)
        if target is not None and (head is None or head.job_id != target.job_id):
            outcome, why = Outcome.LOST, "the child process was stopped to end another job"
        return events + self._bury(child, why, outcome, killed=True)

    def stop_accepting(self) -> list[Event]:
        """Ask every child to finish its running task and give back the rest."""
        self.closing = True
        for child in self.children:
            if not child.stopping:
                child.stopping = True
                with contextlib.suppress(OSError):
                    _send(child, ("stop",))
        return []

    def kill_all(self, why: str) -> list[Event]:
        events: list[Event] = []
        for child in list(self.children):
            events.extend(self._kill(child, Outcome.LOST, why))
        return events

    def close(self, timeout: float = 5.0) -> list[Event]:
        """Stop every child: each finishes its running task (within ``timeout`` seconds in
        all) and gives back the rest. Returns what happened: results, Released tasks, and a
        task still running at the deadline ended ``lost`` (its child killed)."""
        self.stop_accepting()
        events: list[Event] = []
        deadline = time.monotonic() + timeout
        for child in list(self.children):
            child.process.join(max(deadline - time.monotonic(), 0.0))
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
                events.extend(self._read(child))
                events.extend(
                    self._bury(child, "the worker stopped while the job ran", killed=True)
                )
            else:
                events.extend(self._drain(child))
        self.children.clear()
        return events


def _send(child: _Child, message: tuple[Any, ...]) -> None:
    child.conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
