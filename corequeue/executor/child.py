"""The child process: receives tasks from the worker, runs them, sends results.

Several jobs may be in flight in one child: async jobs (``async def run``) on an event loop
(a thread of the child), up to ``concurrency`` at once; sync jobs one at a time on the main
thread (``threads`` = 1, today's isolation and the cheapest path) or in a pool of ``threads``
threads. A job class with ``exclusive = True`` never shares the child: it starts once nothing
else is in flight, and nothing starts beside it. Tasks that share a gate (a chain under a
concurrency limit, see corequeue.core.limits) start one at a time, in the order received.

Protocol on the pipe (pickled plain tuples, framed as ``multiprocessing`` connections frame
them). Child to parent first: ``("ready",)`` once its imports are done; only then does it get
tasks. Parent to child: ``("run", [task fields, ...])``; ``("skip", [job ids])`` (cancelled:
drop these if not started yet, cancel them if they are async and running); ``("abandon", [job
ids])`` (the parent ended these sync jobs itself, a timeout or a cancel: their results are not
sent); ``("stop",)`` (give back what has not started, finish what has, exit). Child to parent:
``("started", job id, kind)`` as a task starts (the parent times it from this; ``kind`` is
:data:`SYNC`, :data:`ASYNC` or :data:`EXCLUSIVE`, so the parent learns what each job name is),
``("done", result fields)`` as it ends (or, when the main thread starts its next sync task at
once, ``("next", result fields, next job id, kind)``: both in one message), and ``("released",
[job ids])`` with the tasks it dropped unstarted. Async tasks are reported in batches:
``("started_many", [(job id, kind), ...])``, ``("done_many", [result fields, ...])``. Each
result is written as soon as its task ends (the main thread's last one at the latest when it
next waits; async ones at the end of the loop's turn), so a child that dies later loses none.

An async job past its ``timeout`` is cancelled here and reported ``timed_out``; a sync one
cannot be stopped in its thread: the parent decides (see executor.pool).

The child dies with its parent (``PR_SET_PDEATHSIG`` on Linux): a SIGKILLed worker leaves no
orphan running a job that another worker will rescue and run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import inspect
import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from typing import Any

from corequeue import hooks, registry, tracing
from corequeue.config import Settings
from corequeue.core.states import Outcome
from corequeue.executor.task import Task, TaskResult, run_task, run_task_async
from corequeue.logs import LOG_FORMAT_ENV, configure_child_logging
from corequeue.store.orm import forget_inherited

#: What a started task is, as the child reports it: bits, ASYNC | EXCLUSIVE for an exclusive
#: async job.
SYNC, ASYNC, EXCLUSIVE = 0, 1, 2
_PICKLE = pickle.HIGHEST_PROTOCOL
#: The child's first-generation garbage collection threshold (Python's default: 700).
GC_THRESHOLD = 10_000


@dataclass(frozen=True, slots=True)
class ChildConfig:
    imports: tuple[str, ...]
    middleware: tuple[str, ...]
    database_url: str  # only for loading ORM parameters; tasks need no queue connection
    concurrency: int = 500  # async jobs in flight at once
    threads: int = 1  # sync jobs in flight at once (1: on the main thread)
    hooks: tuple[str, ...] = ()  # the hooks setting (corequeue.hooks.load)
    #: The parent's --log-format. Not from the environment: the fork server, whose environment
    #: the children have, starts before the parent reads its flags (see corequeue.cli).
    log_format: str = "text"

    @classmethod
    def of(cls, settings: Settings) -> ChildConfig:
        """The children's share of the worker's settings."""
        return cls(
            settings.imports,
            settings.middleware,
            settings.database_url,
            concurrency=settings.concurrency,
            threads=settings.threads,
            hooks=settings.hooks,
            log_format=os.environ.get(LOG_FORMAT_ENV, "text"),  # set by configure_logging
        )


def child_main(conn: Connection, config: ChildConfig) -> None:
    """Entry point of a child process."""
    # The worker (our parent) handles SIGINT/SIGTERM and tells us when to stop: a signal sent
    # to the whole process group (Ctrl-C, systemd's default KillMode) must not cut the running
    # job's grace period short. The parent kills us with SIGKILL when it must.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    configure_child_logging(config.log_format)
    from corequeue import runtime
    from corequeue.middleware import build_chain

    for module in config.imports:
        importlib.import_module(module)
    # A row naming a module outside the configured imports is an unknown job, never imported.
    registry.limit_imports(config.imports)
    runtime.configure(config.database_url, middleware=config.middleware)
    factory = runtime.session_factory()
    if factory is not None:  # set by the application's configure(), maybe before the fork
        forget_inherited(factory)
    hooks.load(config.hooks)
    _tune_gc()
    _Runner(conn, config, build_chain(config.middleware), runtime.codecs()).serve()
    tracing.flush()  # a child's exit runs no atexit handlers: export the spans held back


def _tune_gc() -> None:
    """Garbage collection for the child, once its imports are done: what exists then stays,
    so it is frozen out of later collections, and a young collection starts after
    :data:`GC_THRESHOLD` new objects instead of 700 (a child with hundreds of async jobs in
    flight holds a few objects per job, each outliving many 700-object generations)."""
    gc.collect()
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *older)


def job_kind(name: str) -> int:
    """:data:`SYNC`, :data:`ASYNC` or :data:`EXCLUSIVE` for a job name (SYNC when it cannot
    be resolved: the sync path reports it unresolved)."""
    try:
        cls = registry.resolve(name)
    except Exception:
        return SYNC
    kind = ASYNC if inspect.iscoroutinefunction(getattr(cls, "run", None)) else SYNC
    return kind | (EXCLUSIVE if getattr(cls, "exclusive", False) else 0)


class _Runner:
    """The child's state: tasks queued, what is in flight, and the threads that run it."""

    def __init__(self, conn: Connection, config: ChildConfig, chain: Any, codecs: Any) -> None:
        self.conn = conn
        self.config = config
        self.chain = chain
        self.codecs = codecs
        self.tasks: deque[Task] = deque()
        self.kinds: dict[str, int] = {}
        self.lock = threading.Lock()  # sends, and the counts below
        self.sync_busy = 0  # sync jobs in flight in threads
        self.async_busy: dict[int, asyncio.Task[None] | None] = {}  # None: not created yet
        self.exclusive = 0  # exclusive jobs in flight (0 or 1)
        self.gated: dict[int, tuple[str, ...]] = {}  # gates of tasks in flight off this thread
        self.abandoned: set[int] = set()
        self.starts: list[tuple[Task, int]] = []  # async tasks started, not reported yet
        self.outbox: list[tuple[Any, ...]] = []  # async results not sent yet (the loop's)
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.inbox = select.poll()  # kept: Connection.poll() builds a selector on every call
        self.inbox.register(conn.fileno(), select.POLLIN)
        self.inbox.register(self.wake_r, select.POLLIN)

    def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, _PICKLE)
        with self.lock:
            self.conn.send_bytes(data)

    def serve(self) -> None:
        self.send(("ready",))
        finished: TaskResult | None = None  # the main thread's last result, not sent yet
        while True:
            events = self.inbox.poll(0) if self.tasks else []
            task = None if events else self._next_task()
            if task is None:  # nothing to start now: wait for a message or a job's end
                self._flush_starts()
                if finished is not None:
                    self.send(("done", finished.wire()))
                    finished = None
                if self.stopping and not self._in_flight():
                    return
                ready = {fd for fd, _ in (events or self.inbox.poll(None))}
                if self.wake_r in ready:
                    os.read(self.wake_r, 1 << 16)
                if self.conn.fileno() in ready and not self._receive():
                    return
                continue
            kind = self._kind(task)
            if kind & ASYNC:
                self._start_async(task, kind)
            elif self.config.threads > 1:
                self._start_thread(task, kind)
            else:  # the main thread runs it: no hand-off to a thread
                self._flush_starts()
                if finished is None:
                    self.send(("started", task.job_id, kind))
                else:  # one message: the last task's result, and that this one starts now
                    self.send(("next", finished.wire(), task.job_id, kind))
                self.exclusive += kind >> 1
                finished = run_task(task, self.chain, codecs=self.codecs)
                self.exclusive -= kind >> 1

    def _kind(self, task: Task) -> int:
        kind = self.kinds.get(task.name)
        if kind is None:
            kind = self.kinds[task.name] = job_kind(task.name)
        return kind

    def _in_flight(self) -> int:
        """Jobs not done yet, and async results not sent yet (a child that stops exits only
        once the loop has sent them: its thread dies with the process)."""
        with self.lock:
            return self.sync_busy + len(self.async_busy) + self.exclusive + len(self.outbox)

    def _next_task(self) -> Task | None:
        """The first queued task that may start now (None: none may). Async tasks pass sync
        ones waiting for a thread; nothing passes an exclusive task waiting for the child to
        empty, nor a task of a chain (one with gates) an earlier task sharing a gate."""
        threads = self.config.threads
        with self.lock:
            if self.exclusive:
                return None
            busy = self.sync_busy + len(self.async_busy)
            async_room = len(self.async_busy) < self.config.concurrency
            sync_room = self.sync_busy < threads
            blocked = {gate for gates in self.gated.values() for gate in gates}
        for i, task in enumerate(self.tasks):
            kind = self._kind(task)
            if kind & EXCLUSIVE:
                if busy:
                    return None
                ok = True
            else:
                ok = async_room if kind & ASYNC else sync_room
            if task.gates:  # a chain's tasks (flow control) start in order, one at a time
                ok = ok and blocked.isdisjoint(task.gates)
                blocked.update(task.gates)
            if ok:
                del self.tasks[i]
                return task
        return None

    def _receive(self) -> bool:
        """Apply one message from the parent. False: the child must exit now."""
        try:
            message = self.conn.recv()
        except EOFError:
            return False
        if message[0] == "run":
            self.tasks.extend(map(Task._make, message[1]))  # times as sent: see Task.wire
        elif message[0] == "skip":
            skip = set(message[1])
            dropped = [t.job_id for t in self.tasks if t.job_id in skip]
            if dropped:
                self.tasks = deque(t for t in self.tasks if t.job_id not in skip)
                self.send(("released", dropped))
            for job_id in skip:
                self._cancel_async(job_id)
        elif message[0] == "abandon":
            with self.lock:
                self.abandoned.update(message[1])
        elif message[0] == "stop":
            self.send(("released", [t.job_id for t in self.tasks]))
            self.tasks.clear()
            self.stopping = True
        return True

    # -- threads ----------------------------------------------------------------------------

    def _ended(self, result: TaskResult, kind: int, *, threaded: bool) -> None:
        """A job off the main thread ended: send its result, free its slot, wake the main
        thread."""
        with self.lock:
            self.exclusive -= kind >> 1
            self.gated.pop(result.job_id, None)
            if not threaded:  # on the loop: results go out together, once per loop turn
                self.async_busy.pop(result.job_id, None)
                if not self.outbox:
                    asyncio.get_running_loop().call_soon(self._flush_results)
                self.outbox.append(result.wire())
            else:
                self.sync_busy -= 1
                if result.job_id in self.abandoned:
                    self.abandoned.discard(result.job_id)
                else:
                    self.conn.send_bytes(pickle.dumps(("done", result.wire()), _PICKLE))
        if self.tasks or self.stopping:  # the main thread waits for a free slot or the end
            with contextlib.suppress(BlockingIOError):  # it has wake-ups to read already
                os.write(self.wake_w, b"x")

    def _flush_results(self) -> None:
        """On the loop: send the async results that ended since the last flush, at once."""
        with self.lock:
            results, self.outbox = self.outbox, []
            self.conn.send_bytes(pickle.dumps(("done_many", results), _PICKLE))
        if self.stopping:  # the main thread waits for them to be sent before it exits
            with contextlib.suppress(BlockingIOError):
                os.write(self.wake_w, b"x")

    def _flush_starts(self) -> None:
        """Report the async tasks started since the last flush, and hand them to the loop,
        in one message and one wake-up of the loop each."""
        if not self.starts:
            return
        starts, self.starts = self.starts, []
        self.send(("started_many", [(t.job_id, kind) for t, kind in starts]))
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._create_many, starts)

    def _start_thread(self, task: Task, kind: int) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="corequeue-job")
        with self.lock:
            self.sync_busy += 1
            self.exclusive += kind >> 1
            if task.gates:
                self.gated[task.job_id] = task.gates
        self.send(("started", task.job_id, kind))

        def run() -> None:
            self._ended(run_task(task, self.chain, codecs=self.codecs), kind, threaded=True)

        self.pool.submit(run)

    # -- the event loop ---------------------------------------------------------------------

    def _start_async(self, task: Task, kind: int) -> None:
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="corequeue-loop", daemon=True).start()
        with self.lock:
            self.async_busy[task.job_id] = None  # the task is created on the loop
            self.exclusive += kind >> 1
            if task.gates:
                self.gated[task.job_id] = task.gates
        self.starts.append((task, kind))  # reported and handed over by _flush_starts

    def _create_many(self, starts: list[tuple[Task, int]]) -> None:
        """On the loop: run each task as an asyncio task (unless cancelled meanwhile)."""
        create = asyncio.get_running_loop().create_task
        run = self._run_async
        with self.lock:
            busy = self.async_busy
            for task, kind in starts:
                if task.job_id in busy:
                    busy[task.job_id] = create(run(task, kind))

    def _cancel_async(self, job_id: int) -> None:
        loop = self.loop
        if loop is not None and job_id in self.async_busy:
            loop.call_soon_threadsafe(self._cancel_on_loop, job_id)

    def _cancel_on_loop(self, job_id: int) -> None:
        with self.lock:
            running = self.async_busy.get(job_id)
        if running is not None:
            running.cancel()

    async def _run_async(self, task: Task, kind: int) -> None:
        started = time.perf_counter()
        try:
            if task.timeout is None:  # no timeout: no timer to arm
                result = await run_task_async(task, self.chain, codecs=self.codecs)
            else:
                async with asyncio.timeout(task.timeout):
                    result = await run_task_async(task, self.chain, codecs=self.codecs)
        except TimeoutError:
            result = _stopped(task, started, Outcome.TIMED_OUT)
        except asyncio.CancelledError:
            result = _stopped(task, started, Outcome.CANCELLED)
        self._ended(result, kind, threaded=False)


def _stopped(task: Task, started: float, outcome: Outcome) -> TaskResult:
    """The result of an async job this child stopped (its timeout, or a cancel)."""
    if outcome is Outcome.TIMED_OUT:
        error_type, why = "JobTimeout", f"the job ran past its timeout of {task.timeout:g}s"
    else:
        error_type, why = "JobCancelled", "the job was cancelled"
    duration = time.perf_counter() - started
    tracing.stopped(task.job_id, outcome, why)
    return TaskResult(task.job_id, task.lease, outcome, duration, None, error_type, why)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    # Our parent is the pool's fork server, which exits when the worker does, once no child
    # holds its "alive" pipe: this child lets go of its copy.
    with contextlib.suppress(Exception):
        server: Any = forkserver._forkserver
        if server._forkserver_alive_fd is not None:
            os.close(server._forkserver_alive_fd)
            server._forkserver_alive_fd = None
    worker = multiprocessing.parent_process()
    if os.getppid() == 1 or (worker is not None and not _exists(worker.pid)):
        os._exit(1)  # the worker (or the fork server) died before prctl: go now


def _exists(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
