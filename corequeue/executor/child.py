"""The child process: receives tasks from the worker, runs them one by one, sends results.

Protocol on the pipe (pickled plain tuples, framed as ``multiprocessing`` connections frame
them). Child to parent first: ``("ready",)`` once its imports are done; only then does it get
tasks. Parent to child: ``("run", [task fields, ...])``, ``("skip", [job ids])`` (drop these if
not started yet: they were cancelled) or ``("stop",)``. Child to parent: ``("started", job id)``
before each task (the parent times the task from it), ``("done", result fields)`` after it (or,
when the next task starts at once, ``("next", result fields, next job id)``: both in one
message), and ``("released", [job ids])`` with the tasks it dropped unstarted (on skip, or all
of them when told to stop). Each result is written as soon as its task ends, so a child that
dies later loses none.

The child dies with its parent (``PR_SET_PDEATHSIG`` on Linux): a SIGKILLed worker leaves no
orphan running a job that another worker will rescue and run again.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import multiprocessing
import os
import pickle
import select
import signal
import sys
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from corequeue import registry
from corequeue.executor.task import Task, TaskResult, run_task


@dataclass(frozen=True, slots=True)
class ChildConfig:
    imports: tuple[str, ...]
    middleware: tuple[str, ...]
    database_url: str  # only for loading ORM parameters; tasks need no queue connection


def child_main(conn: Connection, config: ChildConfig) -> None:
    """Entry point of a spawned child process."""
    # The worker (our parent) handles SIGINT/SIGTERM and tells us when to stop: a signal sent
    # to the whole process group (Ctrl-C, systemd's default KillMode) must not cut the running
    # job's grace period short. The parent kills us with SIGKILL when it must.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from corequeue import runtime
    from corequeue.middleware import build_chain

    for module in config.imports:
        importlib.import_module(module)
    # A row naming a module outside the configured imports is an unknown job, never imported.
    registry.limit_imports(config.imports)
    runtime.configure(config.database_url, middleware=config.middleware)
    chain = build_chain(config.middleware)
    codecs = runtime.codecs()
    tasks: deque[Task] = deque()
    finished: TaskResult | None = None  # the last result, not sent yet
    inbox = select.poll()  # kept: Connection.poll() builds a selector on every call
    inbox.register(conn.fileno(), select.POLLIN)

    def send(message: tuple[Any, ...]) -> None:
        conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    send(("ready",))

    while True:
        if not tasks or inbox.poll(0):
            if finished is not None:
                send(("done", finished.wire()))
                finished = None
            try:
                message = conn.recv()
            except EOFError:
                return
            if message[0] == "stop":
                send(("released", [t.job_id for t in tasks]))
                return
            if message[0] == "skip":
                skip = set(message[1])
                dropped = [t.job_id for t in tasks if t.job_id in skip]
                if dropped:
                    tasks = deque(t for t in tasks if t.job_id not in skip)
                    send(("released", dropped))
                continue
            tasks.extend(map(Task._make, message[1]))
            continue
        task = tasks.popleft()
        if finished is None:
            send(("started", task.job_id))
        else:  # one message: the last task's result, and that this one starts now
            send(("next", finished.wire(), task.job_id))
        finished = run_task(task, chain, codecs=codecs)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl: go now
        os._exit(1)
