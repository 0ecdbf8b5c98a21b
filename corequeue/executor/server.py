"""Where the pool's children come from: a fork server (``multiprocessing``'s "forkserver").

A fresh interpreter, free of the worker's database connections and threads, imports corequeue
and the application's modules once; each child is then a fork of it, ready in milliseconds
instead of importing everything again (about a second each, on the same CPUs). The server
lives as long as the worker process; it exits when the worker does, and the children with it
(``PR_SET_PDEATHSIG``, see executor.child).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from multiprocessing import forkserver

CONTEXT = multiprocessing.get_context("forkserver")
#: What the server imports before forking (then the application's modules): the first module
#: makes it ignore SIGTERM, as the children do (executor/forkserver.py).
PRELOAD = ("corequeue.executor.forkserver", "corequeue.executor.child")


def prepare(imports: Sequence[str]) -> None:
    """Name the modules the server imports (the first call before it starts counts)."""
    CONTEXT.set_forkserver_preload([*PRELOAD, *imports])


def start_early(imports: Sequence[str]) -> None:
    """Start the server now, so its imports run while the worker sets itself up (it would
    otherwise start with the first child)."""
    prepare(imports)
    forkserver.ensure_running()
