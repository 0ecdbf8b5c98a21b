"""Child processes (forked from a fork server) that run tasks: timeouts, crashes, recycling.

Per child, the parent keeps the tasks handed over and which ones started (``("started", job
id, kind)``): timeouts count from that message, not from the hand-off. A child runs up to
``threads`` sync tasks and ``concurrency`` async ones at once (executor.child); the parent
learns each job name's kind from the "started" messages and sizes the room it offers (and so
the claims) by kind (:mod:`corequeue.executor.sizing`): sync slots of ``threads - 1 +
max_pending``, async slots of ``concurrency`` once an async job was seen (nothing is imported
for this in the parent); the worker's claims are split by the same kinds
(:meth:`ProcessPool.free_room`). A child gets tasks only once it says it is ready
(``("ready",)``, after its imports): jobs are not claimed for children still starting, while
an idle worker elsewhere could run them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import select
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from corequeue.config import Settings
from corequeue.core import claims, shares
from corequeue.core.states import Outcome
from corequeue.executor import placement, server
from corequeue.executor.child import ASYNC, SYNC, ChildConfig, child_main
from corequeue.executor.events import Event, Ready, Released, describe_exit, ended_here, frames
from corequeue.executor.sizing import Sizing
from corequeue.executor.task import Task, TaskResult

__all__ = ["Event", "ProcessPool", "Ready", "Released", "describe_exit"]

_ctx = server.CONTEXT
log = logging.getLogger("corequeue.worker")

#: When the pool starts, the first child ready waits up to this many seconds for the others
#: before any task is handed out (see ProcessPool.startup_wait).
STARTUP_WAIT = 1.0
#: Seconds past an async job's timeout before the pool stops it by killing its child: the
#: child cancels it at the timeout itself, unless its event loop is blocked.
ASYNC_TIMEOUT_GRACE = 2.0
#: Seconds :meth:`ProcessPool.cancel` waits for a child to confirm an async job's cancel.
CANCEL_WAIT = 1.0
CANCELLED = "the job was cancelled"
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
    pending: dict[int, Task] = field(default_factory=dict)  # handed over, not ended, in order
    started: dict[int, float] = field(default_factory=dict)  # job id -> monotonic start
    kinds: dict[int, int] = field(default_factory=dict)  # job id -> kind, once started
    deadlines: dict[int, float] = field(default_factory=dict)  # job id -> monotonic timeout
    in_async: set[int] = field(default_factory=set)  # pending tasks counted in async slots
    assigned: int = 0
    stopping: bool = False
    draining: bool = False  # a stuck sync job was ended here: replaced once the rest end
    ready: bool = False  # started up: takes tasks (none are handed to a child still starting)
    pid: int | None = field(init=False)  # the process's, kept (read once per result)

    def __post_init__(self) -> None:
        self.pid = self.process.pid


class ProcessPool:
    def __init__(
        self,
        config: ChildConfig,
        *,
        max_processes: int = Settings.max_processes,
        max_jobs_per_process: int = Settings.max_jobs_per_process,
        max_pending_per_process: int = Settings.max_pending_per_process,
        caps: Mapping[str, int] | None = None,
    ) -> None:
        """Limits default to Settings' (defined there only); ``config`` has the rest; ``caps``:
        the queue shares (queue -> most children holding its tasks, Settings.shares). Children
        fork from a fork server that imported corequeue and the application's modules once."""
        self.config = config
        server.prepare(config.imports, config.database_url)
        self.max_processes = max_processes
        self.max_jobs_per_process = max_jobs_per_process
        # The room offered (and so the claims), from the settings and the jobs seen.
        self.sizing = Sizing(
            max_processes, config.threads, config.concurrency, max_pending_per_process
        )
        self.children: list[_Child] = []
        self.replaced = 0  # children that died with work and were replaced
        self.closing = False
        # What each job name turned out to be (the children say, as a task starts): async
        # slots are offered once an async job was seen, and async tasks go to them.
        self.kinds: dict[str, int] = {}
        self.async_names: frozenset[str] = frozenset()  # the names kinds says are ASYNC
        self.caps = dict(caps or {})
        # One poll object for the pool's whole life (multiprocessing's wait() builds a selector
        # and registers every file descriptor on each call).
        self._poller = select.poll()
        self._extra: dict[int, Any] = {}  # registered waitables of the caller, by fd
        self.start_failures = 0  # children that died while starting, in a row
        self._respawn_at = 0.0  # monotonic time before which no child is started
        self._first_ready_at: float | None = None  # monotonic time the first child was ready
        self._handed_out = False  # whether any task was handed to a child yet

    def next_respawn(self) -> float | None:
        """Seconds until a child that is missing may be started (None: none is waiting, or
        the fork server is still importing: its "ready" wakes :meth:`wait`)."""
        if len(self.children) >= self.max_processes or self.closing or not server.ready():
            return None
        return max(self._respawn_at - time.monotonic(), 0.0)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, stop: Callable[[], bool] | None = None) -> None:
        """Start the children that are missing (unless a failed start's delay is running, or
        the fork server is still importing: starting one would wait for it). The worker calls
        it each time round its loop: the one place children are replaced. ``stop`` is asked
        before each child: a stop signal ends the starting at once."""
        if len(self.children) >= self.max_processes or not server.ready():
            return
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

    def startup_wait(self) -> float | None:
        """Seconds the pool still holds back its first tasks (None: it does not). Until every
        child is ready (or ``STARTUP_WAIT`` after the first), no task is handed out, so the
        first jobs spread over all the children. Only at the pool's start: a child replaced
        later never holds the others back."""
        if self._handed_out or self._first_ready_at is None:
            return None
        if not any(not c.ready and not c.stopping for c in self.children):
            return None
        left = self._first_ready_at + STARTUP_WAIT - time.monotonic()
        return left if left > 0 else None

    def free_slots(self) -> int:
        """Room for tasks in the ready children (none while :meth:`startup_wait` holds the
        first tasks back). While another child starts and no duration is known, a ready child
        takes one sync task at a time (slow jobs queued there would not move to the others)."""
        return sum(room for _, room, _, _ in self._free_rooms())

    def free_room(self) -> claims.FreeRoom:
        """The free slots of :meth:`free_slots` by kind, and the job names known to be async:
        what a claim is split by (:func:`corequeue.core.claims.by_kind`)."""
        rooms = self._free_rooms()
        return claims.FreeRoom(sum(r[2] for r in rooms), sum(r[3] for r in rooms), self.async_names)

    def share_rooms(self) -> list[shares.Room]:
        """Each child's free room (as :meth:`free_slots` counts it) and the capped queues it
        holds: what the claim of a worker with queue shares is sized by. A child that takes
        no more work but still holds a queue (recycled, stopping) counts with no room."""
        held = placement.holders(self.children, self.caps)
        free = {id(child): room for child, room, _, _ in self._free_rooms()}
        rooms = []
        for child in self.children:
            holds = frozenset(q for q, ids in held.items() if id(child) in ids)
            if holds or id(child) in free:
                rooms.append(shares.Room(free.get(id(child), 0), holds))
        return rooms

    def _free_rooms(self) -> list[tuple[_Child, int, int, int]]:
        """Each child that takes work, with its free room and its free sync and async slots,
        each within what its ``max_jobs_per_process`` leaves (so the room may be less than the
        two kinds' slots together: a claim asks for no more than the room)."""
        if self.startup_wait() is not None:
            return []
        starting = any(not c.ready and not c.stopping for c in self.children)
        sizing = self.sizing
        target = 1 if starting and sizing.mean_duration is None else sizing.max_pending
        rooms = []
        for child in self.children:
            if self._accepting(child):
                sync, free_async = sizing.rooms(len(child.pending), len(child.in_async), target)
                room = sync + free_async
                if self.max_jobs_per_process:
                    most = max(self.max_jobs_per_process - child.assigned, 0)
                    room, sync, free_async = min(room, most), min(sync, most), min(free_async, most)
                rooms.append((child, room, sync, free_async))
        return rooms

    def has_idle_child(self) -> bool:
        """Whether a child that accepts work has nothing queued (it would sit idle)."""
        return any(self._accepting(c) and not c.pending for c in self.children)

    @property
    def running(self) -> int:
        return sum(len(c.pending) for c in self.children)

    def tasks(self) -> list[Task]:
        return [t for c in self.children for t in c.pending.values()]

    def submit(self, tasks: Sequence[Task]) -> list[Task]:
        """Hand tasks to the children, one message per child, as :func:`placement.place`
        chooses. Returns the tasks no child could take now: the caller gives them back."""
        open_ = [c for c in self.children if self._accepting(c)]
        how = placement.Placing(
            self.config.concurrency, self.max_jobs_per_process, self.kinds, self.caps
        )
        batches, left = placement.place(self.children, open_, tasks, how)
        for child in self.children:
            batch = batches.get(id(child))
            if not batch:
                continue
            child.pending.update((t.job_id, t) for t in batch)
            child.assigned += len(batch)
            self._handed_out = True
            # A dead child's pipe refuses: wait() reports the death through its sentinel.
            with contextlib.suppress(OSError):
                _send(child, ("run", [t.wire() for t in batch]))
        return left

    # -- events -----------------------------------------------------------------------------

    def wait(self, timeout: float | None, extra: Sequence[Any] = ()) -> list[Event]:
        """Wait up to ``timeout`` for results, deaths or a ready ``extra`` waitable (objects
        with ``fileno()``); return what happened (results, and Released for tasks that will
        not run)."""
        wanted = {obj.fileno(): obj for obj in (*extra, *server.waitable())}
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
        events.extend(self._retire())
        return events

    def _drain(self, child: _Child) -> list[Event]:
        events = self._read(child)
        if not child.process.is_alive():
            # It may have sent its last results after the read above, then exited (a stopping
            # child does): the pipe keeps them. Read unread, they would be recorded lost.
            events.extend(self._read(child))
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
        messages, pos = frames(inbox)
        for message in messages:
            self._receive(child, message, events)
        del inbox[:pos]
        return events

    def _receive(self, child: _Child, message: Any, events: list[Event]) -> None:
        kind = message[0]  # the most frequent first: once per job
        if kind == "next":
            self._done(child, message[1], events)
            self._start(child, message[2], message[3])
        elif kind == "done_many":
            for fields in message[1]:
                self._done(child, fields, events)
        elif kind == "started_many":
            for job_id, started_kind in message[1]:
                self._start(child, job_id, started_kind)
        elif kind == "done":
            self._done(child, message[1], events)
        elif kind == "started":
            self._start(child, message[1], message[2])
        elif kind == "ready":
            child.ready = True
            self.start_failures = 0
            if self._first_ready_at is None:
                self._first_ready_at = time.monotonic()
            events.append(Ready(child.pid))
        elif kind == "released":
            gone = tuple(t for i in message[1] if (t := child.pending.pop(i, None)) is not None)
            for task in gone:
                child.in_async.discard(task.job_id)
            events.append(Released(gone))

    def _done(self, child: _Child, fields: tuple[Any, ...], events: list[Event]) -> None:
        job_id = fields[0]
        if child.pending.pop(job_id, None) is None:  # ended here already
            return
        result = TaskResult.from_wire(fields)
        if not child.kinds.pop(job_id, SYNC) & ASYNC:
            self.sizing.observe(result.duration)
        child.started.pop(job_id, None)
        if child.deadlines:
            child.deadlines.pop(job_id, None)
        child.in_async.discard(job_id)
        events.append(result)

    def _start(self, child: _Child, job_id: int, kind: int) -> None:
        """``child`` started a task: time it from now, and learn its job name's kind."""
        task = child.pending.get(job_id)
        if task is None:
            return
        now = child.started[job_id] = time.monotonic()
        child.kinds[job_id] = kind
        if kind & ASYNC:  # handed over before its job was known to be async: it counts now
            child.in_async.add(job_id)
        if task.timeout is not None:
            # The child stops an async job at its timeout itself; this is the backstop.
            grace = ASYNC_TIMEOUT_GRACE if kind & ASYNC else 0.0
            child.deadlines[job_id] = now + task.timeout + grace
        if self.kinds.get(task.name) != kind:
            self.kinds[task.name] = kind
            self.async_names = frozenset(n for n, k in self.kinds.items() if k == ASYNC)
            if kind == ASYNC:
                self.sizing.saw_async()

    def _bury(
        self,
        child: _Child,
        why: str,
        outcome: Outcome = Outcome.LOST,
        *,
        killed: bool = False,
        culprit: int | None = None,
    ) -> list[Event]:
        """A child is gone: its started tasks end with ``outcome``, the rest go back.
        ``killed``: we killed it to end ``culprit`` (its other started tasks go back, not at
        fault) or every started task (None: the worker stops). A child dead on its own is
        charged with its started task, or its first when none was reported started (else a
        job that kills its child at once could loop forever); with several started, which one
        killed it is unknown: each ends ``lost`` marked ``crash_shared`` (see worker.endings)."""
        events: list[Event] = []
        child.process.join(timeout=5)
        self._forget(child)
        if not child.ready and not child.stopping:
            self._start_failed(child, why)
        if child.pending and not child.stopping:
            self.replaced += 1
        now = time.monotonic()
        charged = [t for t in child.pending.values() if t.job_id in child.started]
        if killed and culprit is not None:
            charged = [t for t in charged if t.job_id == culprit]
        elif not charged and child.pending and not killed:
            charged = [next(iter(child.pending.values()))]
            why += " (before the job started)"
        shared = not killed and len(charged) > 1
        if shared:
            why += f" with {len(charged)} jobs in flight (which one killed it is not known)"
        for task in charged:
            del child.pending[task.job_id]
            began = child.started.get(task.job_id)
            events.append(
                ended_here(task, outcome, 0.0 if began is None else now - began, why, shared)
            )
        if child.pending:
            events.append(Released(tuple(child.pending.values())))
            child.pending.clear()
        return events

    def _start_failed(self, child: _Child, why: str) -> None:
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

    def _retire(self) -> list[Event]:
        """Stop the children that are done: recycled ones (``max_jobs_per_process``) once
        their tasks have ended, draining ones once no task they started is left (the tasks
        they never started go back)."""
        events: list[Event] = []
        for child in list(self.children):
            if child.draining and not any(i in child.started for i in child.pending):
                events.extend(self._kill(child, Outcome.LOST, "the child was replaced"))
            elif (
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
        return events

    def check_timeouts(self) -> list[Event]:
        """End the started tasks past their timeout: an async one the child failed to stop
        (its event loop is blocked) and a sync one running alone kill the child; a sync one
        beside others is recorded now and its child drained and replaced (a thread cannot
        be stopped)."""
        events: list[Event] = []
        now = time.monotonic()
        for child in list(self.children):
            for job_id in [i for i, deadline in child.deadlines.items() if now > deadline]:
                task = child.pending.get(job_id)
                if task is None or child not in self.children:
                    continue
                why = f"the job ran past its timeout of {task.timeout:g}s"
                if child.kinds.get(job_id, SYNC) & ASYNC:
                    why += "; its child's event loop was blocked (a sync call in an async job?)"
                    events.extend(self._kill(child, Outcome.TIMED_OUT, why, job_id))
                else:
                    events.extend(self._end_sync(child, job_id, Outcome.TIMED_OUT, why))
        return events

    def _end_sync(self, child: _Child, job_id: int, outcome: Outcome, why: str) -> list[Event]:
        """End a started sync task here: the child is killed when it runs nothing else;
        otherwise the task's thread is left to finish unheard (its result is dropped) while
        the child finishes its other tasks, then it is replaced (:meth:`_retire`)."""
        if not any(i != job_id for i in child.started if i in child.pending):
            return self._kill(child, outcome, why, job_id)
        task = child.pending.pop(job_id)
        duration = time.monotonic() - child.started.pop(job_id)
        child.deadlines.pop(job_id, None)
        child.in_async.discard(job_id)
        if not child.draining:
            child.draining = child.stopping = True
            self.replaced += 1
        with contextlib.suppress(OSError):
            _send(child, ("abandon", [job_id]))
            _send(child, ("stop",))
        why += "; its thread cannot be stopped: the child finishes its other jobs and is replaced"
        return [ended_here(task, outcome, duration, why, False)]

    def next_deadline(self) -> float | None:
        """Seconds until the earliest started task's timeout (None when none has one)."""
        deadlines = [d for c in self.children for d in c.deadlines.values()]
        return max(min(deadlines) - time.monotonic(), 0.0) if deadlines else None

    def cancel(self, job_ids: set[int]) -> list[Event]:
        """Stop these jobs (cancelled, or no longer ours), leaving their siblings: an async one
        is cancelled in its child (its result is waited for, up to ``CANCEL_WAIT``), a sync one
        ended as :meth:`_end_sync` does, an unstarted one dropped by its child ("released")."""
        events: list[Event] = []
        waiting: list[tuple[_Child, set[int]]] = []
        for child in list(self.children):
            events.extend(self._read(child))  # a "started" may be waiting in the pipe
            mine = [i for i in child.pending if i in job_ids]
            for job_id in mine:
                started_sync = job_id in child.started and not child.kinds.get(job_id, 0) & ASYNC
                if started_sync and child in self.children:
                    events.extend(self._end_sync(child, job_id, Outcome.CANCELLED, CANCELLED))
            rest = [i for i in mine if i in child.pending]
            if rest and child in self.children:
                with contextlib.suppress(OSError):  # a dead child is reported by wait()
                    _send(child, ("skip", rest))
                waiting.append((child, {i for i in rest if i in child.started}))
        deadline = time.monotonic() + CANCEL_WAIT
        for child, ids in waiting:
            while ids & child.pending.keys() and child in self.children:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([child.sock], [], [], left)[0]:
                    break
                events.extend(self._read(child))
        return events

    def _kill(
        self, child: _Child, outcome: Outcome, why: str, culprit: int | None = None
    ) -> list[Event]:
        """Kill ``child`` to end ``culprit`` (None: every started task) with ``outcome``.
        Messages it sent before dying are read first: a task that finished in the meantime
        keeps its result."""
        child.process.kill()
        child.process.join(timeout=5)
        events = self._read(child)
        return events + self._bury(child, why, outcome, killed=True, culprit=culprit)

    def stop_accepting(self) -> list[Event]:
        """Ask every child to finish its started tasks and give back the rest."""
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
        """Stop every child: each finishes its started tasks (within ``timeout`` seconds in
        all) and gives back the rest. Returns what happened: results, Released tasks, and the
        tasks still running at the deadline ended ``lost`` (their children killed)."""
        self.stop_accepting()
        events: list[Event] = []
        deadline = time.monotonic() + timeout
        while self.children and (left := deadline - time.monotonic()) > 0:
            events.extend(self.wait(left))
        for child in list(self.children):
            events.extend(self._kill(child, Outcome.LOST, "the worker stopped while the job ran"))
        self.children.clear()
        return events


def _send(child: _Child, message: tuple[Any, ...]) -> None:
    child.conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
