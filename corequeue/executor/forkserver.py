"""Imported by the pool's fork server only (named in its preload list, never imported
elsewhere): the fork server ignores SIGTERM, as the children do, and imports the application's
modules (``server.IMPORTS_ENV``) so that every child forked from it has them already.

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

from corequeue.executor.server import IMPORTS_ENV

signal.signal(signal.SIGTERM, signal.SIG_IGN)

# A module that fails to import is left to each child, which imports it again and reports the
# error to the worker as one clear line: here it would kill the server with a traceback
# (multiprocessing's own preload passes over ImportError only).
for _module in filter(None, os.environ.get(IMPORTS_ENV, "").split(",")):
    with contextlib.suppress(Exception):
        importlib.import_module(_module)
