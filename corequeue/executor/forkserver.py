"""Imported by the pool's fork server only (its preload list, never imported elsewhere): the
fork server ignores SIGTERM, as the children do, imports the children's code and the
application's modules (``server.IMPORTS_ENV``) and the database driver
(``server.DRIVER_ENV``) so that every child forked from it has them already, then tells the
worker it is ready (``server.READY_ENV``).

Children are forked from a fork server (``multiprocessing``'s "forkserver": a fresh
interpreter, free of the worker's database connections and threads, that imports corequeue
and the application's modules once). A SIGTERM sent to the whole process group (systemd's
default KillMode, ``kill -TERM -PGID``) would kill the fork server, and with it, through
``PR_SET_PDEATHSIG``, every child in the middle of its jobs: the worker's grace period would
not hold. SIGINT it ignores already.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket

import corequeue.executor.child  # noqa: F401  (what every child runs)
from corequeue.executor.server import DRIVER_ENV, IMPORTS_ENV, READY_ENV
from corequeue.store.engine import load_driver

signal.signal(signal.SIGTERM, signal.SIG_IGN)

# A module that fails to import is left to each child, which imports it again and reports the
# error to the worker as one clear line: here it would kill the server with a traceback
# (multiprocessing's own preload passes over ImportError only).
for _module in filter(None, os.environ.get(IMPORTS_ENV, "").split(",")):
    with contextlib.suppress(Exception):
        importlib.import_module(_module)

# Each child configures its store as it starts: loading the driver there (psycopg, a few tenths
# of a second) would be paid once per child, all of them at once. Not loaded: each child
# reports the error as it configures its store.
if os.environ.get(DRIVER_ENV):
    with contextlib.suppress(Exception):
        load_driver(os.environ[DRIVER_ENV])

# Forking waits for nothing now: the worker may start its children (executor.server.ready).
with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as _sock:
    _sock.sendto(b"ready", os.environ.get(READY_ENV, ""))
