"""Imported by the pool's fork server only (named in its preload list, never imported
elsewhere): the fork server ignores SIGTERM, as the children do.

Children are forked from a fork server (``multiprocessing``'s "forkserver": a fresh
interpreter, free of the worker's database connections and threads, that imports corequeue
and the application's modules once). A SIGTERM sent to the whole process group (systemd's
default KillMode, ``kill -TERM -PGID``) would kill the fork server, and with it, through
``PR_SET_PDEATHSIG``, every child in the middle of its jobs: the worker's grace period would
not hold. SIGINT it ignores already.
"""

from __future__ import annotations

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
