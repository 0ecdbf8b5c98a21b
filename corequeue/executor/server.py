"""Where the pool's children come from: a fork server (``multiprocessing``'s "forkserver").

A fresh interpreter, free of the worker's database connections and threads, imports corequeue
and the application's modules once; each child is then a fork of it, ready in milliseconds
instead of importing everything again (about a second each, on the same CPUs). The server
lives as long as the worker process; it exits when the worker does, and the children with it
(``PR_SET_PDEATHSIG``, see executor.child).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing import forkserver

CONTEXT = multiprocessing.get_context("forkserver")
#: The application's modules for the server to import, comma-separated, in the environment it
#: starts with (read by executor/forkserver.py).
IMPORTS_ENV = "COREQUEUE_FORKSERVER_IMPORTS"
#: What the server imports before forking (then the application's modules): the first module
#: makes it ignore SIGTERM, as the children do (executor/forkserver.py).
PRELOAD = ("corequeue.executor.forkserver", "corequeue.executor.child")


def prepare(imports: Sequence[str]) -> None:
    """Name the modules the server imports (the first call before it starts counts): the
    application's go through the environment the server starts with, so that a module that
    fails to import there does not take the server down (see executor.forkserver)."""
    os.environ[IMPORTS_ENV] = ",".join(imports)
    CONTEXT.set_forkserver_preload(list(PRELOAD))


def start_early(imports: Sequence[str]) -> None:
    """Start the server now, so its imports run while the worker sets itself up (it would
    otherwise start with the first child)."""
    prepare(imports)
    forkserver.ensure_running()
