"""PostgreSQL LISTEN in a background thread: wakes the worker when jobs are enqueued.

The worker polls anyway (``poll_interval``), so a dead LISTEN connection costs latency, never
jobs. The notifier notices the loss, reports ``degraded`` (logged and in stats), and
reconnects with capped backoff.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

from sqlalchemy.engine import URL

from corequeue.store.queries import NOTIFY_CHANNEL

log = logging.getLogger("corequeue.notifier")

#: The LISTEN connection's application_name (visible in pg_stat_activity).
APPLICATION_NAME = "corequeue-listen"


class WakeUp:
    """A pipe the worker's wait() watches; ``set()`` makes it readable (debounced)."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._pending = False
        self._closed = False
        # Reentrant: set() is also called from signal handlers, which run in the main thread,
        # possibly while it is inside clear().
        self._lock = threading.RLock()

    def fileno(self) -> int:
        return self._r

    def set(self) -> None:
        # Under the lock, and never after close(): the file descriptor number of a closed
        # pipe is soon reused (by a database socket, say), and a stray byte written there by
        # a late thread would corrupt that connection.
        with self._lock:
            if self._pending or self._closed:
                return
            self._pending = True
            with contextlib.suppress(BlockingIOError):
                os.write(self._w, b"x")

    def clear(self) -> bool:
        """Drain the pipe. Returns whether it had been set."""
        with self._lock:
            if self._closed:
                return False
            was_set = self._pending
            self._pending = False
            try:
                while os.read(self._r, 4096):
                    pass
            except BlockingIOError:
                pass
            return was_set

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._r)
            os.close(self._w)


#: Seconds the LISTEN thread waits for a notification at a time.
LISTEN_WAIT = 0.25


class Notifier(threading.Thread):
    def __init__(self, url: URL, wake: WakeUp, *, reconnect_max: float = 5.0) -> None:
        super().__init__(name="corequeue-listen", daemon=True)
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.wake = wake
        self.reconnect_max = reconnect_max
        self.degraded = True  # until the first LISTEN succeeds
        self.listening = threading.Event()
        self._halt = threading.Event()
        self._conn: Any = None

    def stop(self) -> None:
        self._halt.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.cancel()

    def run(self) -> None:
        import psycopg

        delay = 0.1
        while not self._halt.is_set():
            try:
                with psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME
                ) as conn:
                    self._conn = conn
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if self.degraded:
                        log.info("listening for enqueue notifications on %s", NOTIFY_CHANNEL)
                    self.degraded = False
                    self.listening.set()
                    delay = 0.1
                    self.wake.set()  # catch up on anything enqueued while we were away
                    quiet = 0.0  # seconds without a notification
                    while not self._halt.is_set():
                        quiet += LISTEN_WAIT
                        # Short waits: stop() is seen within one (the worker's exit waits
                        # for this thread; a notification wait cannot be interrupted).
                        for _ in conn.notifies(timeout=LISTEN_WAIT):
                            self.wake.set()
                            quiet = 0.0
                        if quiet >= 1.0:
                            # A cheap liveness check after a quiet second: a dead connection
                            # raises here. Not after a notification: the connection is alive,
                            # and the worker is claiming right now (a round trip here would
                            # compete with that claim for the CPU).
                            quiet = 0.0
                            conn.execute("SELECT 1")
            except Exception as exc:
                if self._halt.is_set():
                    break
                if not self.degraded:
                    log.warning(
                        "LISTEN connection lost (%s): degraded to polling until it is back",
                        str(exc).strip().splitlines()[0]
                        if str(exc).strip()
                        else type(exc).__name__,
                    )
                self.degraded = True
                self.listening.clear()
                self._halt.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
            finally:
                self._conn = None
