"""Where the pool's children come from: a fork server (``multiprocessing``'s "forkserver").

A fresh interpreter, free of the worker's database connections and threads, imports corequeue
and the application's modules once; each child is then a fork of it, ready in milliseconds
instead of importing everything again (about a second each, on the same CPUs). The server
lives as long as the worker process; it exits when the worker does, and the children with it
(``PR_SET_PDEATHSIG``, see executor.child).

Starting a child waits until the server has finished its imports (``multiprocessing`` reads
the child's pid from the server, which forks only then): the pool starts none before the
server says it is ready, one datagram on a socket of this process (:func:`ready`,
:func:`waitable`), so the worker's loop keeps turning (heartbeats, signals) meanwhile.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from multiprocessing import forkserver

CONTEXT = multiprocessing.get_context("forkserver")
#: The application's modules for the server to import, comma-separated, in the environment it
#: starts with (read by executor/forkserver.py).
IMPORTS_ENV = "COREQUEUE_FORKSERVER_IMPORTS"
#: The scheme of the database URL (``postgresql+psycopg://``; never the rest, which may hold a
#: password), for the server to load the database driver the children's store uses.
DRIVER_ENV = "COREQUEUE_FORKSERVER_DRIVER"
#: The path of the socket the server sends one datagram to once its imports are done.
READY_ENV = "COREQUEUE_FORKSERVER_READY"
#: What the server imports before forking: that module makes it ignore SIGTERM, as the
#: children do, imports the children's code and the application's modules, then says it is
#: ready (executor/forkserver.py).
PRELOAD = ("corequeue.executor.forkserver",)


class _Readiness:
    """This process's side of the server's "ready": a datagram socket bound to a path of a
    private directory. ``known`` once the datagram came (or no socket could be made: then
    starting a child waits for the server, as ``multiprocessing`` does by itself)."""

    def __init__(self) -> None:
        self.known = False
        self.sock: socket.socket | None = None
        self.folder: str | None = None

    def open(self) -> None:
        if self.known or self.sock is not None:
            return
        try:
            self.folder = tempfile.mkdtemp(prefix="corequeue-")
            path = os.path.join(self.folder, "ready")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(path)
            except OSError:
                sock.close()
                raise
        except OSError:
            self.close(known=True)
            return
        sock.setblocking(False)
        self.sock = sock
        os.environ[READY_ENV] = path
        atexit.register(self.close)

    def poll(self) -> bool:
        if self.sock is not None:
            with contextlib.suppress(BlockingIOError):
                self.sock.recv(64)
                self.close(known=True)
        return self.known

    def close(self, known: bool = False) -> None:
        self.known = self.known or known
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


_readiness = _Readiness()


def prepare(imports: Sequence[str], database_url: str = "") -> None:
    """Name the modules the server imports and the database whose driver it loads (the first
    call before it starts counts): they go through the environment the server starts with, so
    that a module that fails to import there does not take the server down (see
    executor.forkserver)."""
    os.environ[IMPORTS_ENV] = ",".join(imports)
    scheme, sep, _ = database_url.partition("://")
    os.environ[DRIVER_ENV] = f"{scheme}://" if sep else ""
    _readiness.open()
    CONTEXT.set_forkserver_preload(list(PRELOAD))


def start_early(imports: Sequence[str], database_url: str = "") -> None:
    """Start the server now, so its imports run while the worker sets itself up (it would
    otherwise start with the first child)."""
    prepare(imports, database_url)
    forkserver.ensure_running()


def ready() -> bool:
    """Whether a child can be started without waiting for the server's imports. Starts the
    server if it is not running; never waits."""
    if _readiness.known:
        return True
    server = forkserver._forkserver
    before = getattr(server, "_forkserver_pid", None)
    forkserver.ensure_running()
    if before is not None and getattr(server, "_forkserver_pid", None) != before:
        # It died before it said so (a crash in an import): children start as multiprocessing
        # starts them, waiting for the next server, each failing start counted by the pool.
        _readiness.close(known=True)
    return _readiness.poll()


def waitable() -> list[socket.socket]:
    """What to wait on for the server's "ready" (nothing once it came)."""
    return [] if _readiness.sock is None else [_readiness.sock]
