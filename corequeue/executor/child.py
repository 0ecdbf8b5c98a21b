"""The child process: receives tasks from the worker, runs them one by one, sends results.

Protocol on the pipe. Parent to child: ``("run", [Task, ...])`` or ``("stop",)``.
Child to parent: ``("done", TaskResult)`` after each task, and ``("released", [job ids])``
with the tasks it had not started when told to stop.
"""

from __future__ import annotations

import importlib
import logging
import signal
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection

from corequeue.executor.task import Task, run_task


@dataclass(frozen=True, slots=True)
class ChildConfig:
    imports: tuple[str, ...]
    middleware: tuple[str, ...]
    database_url: str  # only for loading ORM parameters; tasks need no queue connection


def child_main(conn: Connection, config: ChildConfig) -> None:
    """Entry point of a spawned child process."""
    # The worker (our parent) handles SIGINT/SIGTERM and tells us when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from corequeue import app
    from corequeue.middleware import build_chain

    for module in config.imports:
        importlib.import_module(module)
    app.configure(config.database_url, middleware=config.middleware)
    chain = build_chain(config.middleware)
    codecs = app.codecs()
    tasks: deque[Task] = deque()
    while True:
        if not tasks or conn.poll():
            try:
                message = conn.recv()
            except EOFError:
                return
            if message[0] == "stop":
                conn.send(("released", [t.job_id for t in tasks]))
                return
            tasks.extend(message[1])
            continue
        task = tasks.popleft()
        conn.send(("done", run_task(task, chain, codecs=codecs)))
