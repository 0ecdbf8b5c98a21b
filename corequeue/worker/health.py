"""``corequeue run --health-port PORT``: liveness and readiness over HTTP, for an orchestrator's
probes (Kubernetes, Nomad, systemd's watchdog scripts).

- ``GET /livez``: 200 while the worker's loop is turning (it stamps ``Counters.turned_at`` each
  time round; the loop waits at most ``poll_interval`` between turns), 503 once that stamp is
  older than ``stale_after`` seconds (a loop stuck in a call that never returns).
- ``GET /readyz``: 200 when the database answers a query (on a connection of its own, with a
  short timeout) and at least one child process is up and ready for jobs; 503 otherwise.

Both answer a small JSON object (``{"status": "ok", ...}`` or ``{"status": "failing", ...}``)
naming each check. The server is a daemon thread of the worker's parent process (the standard
library's ``http.server``: no dependency); it only reads what the loop writes, and never calls
into the pool (a child's exit is the loop's to reap).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from corequeue.core.errors import ConfigError
from corequeue.store.health import DatabaseProbe

log = logging.getLogger("corequeue.worker")

#: The smallest staleness limit: a loop turns at least every poll_interval (1 s by default).
MIN_STALE_AFTER = 30.0


class Watched(Protocol):
    """What the health server reads of a worker (:class:`corequeue.worker.Worker`)."""

    @property
    def counters(self) -> Any: ...

    @property
    def pool(self) -> Any: ...


def stale_after_for(poll_interval: float) -> float:
    """How old the loop's last turn may be before /livez fails: well past the longest wait
    between two turns (``poll_interval``), and never under :data:`MIN_STALE_AFTER`."""
    return max(MIN_STALE_AFTER, 5 * poll_interval)


class Health:
    """The two checks, without HTTP (tests call them directly)."""

    def __init__(
        self,
        worker: Watched,
        probe: Callable[[], str | None],
        *,
        stale_after: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker = worker
        self.probe = probe
        self.stale_after = stale_after
        self.monotonic = monotonic

    def live(self) -> tuple[bool, dict[str, Any]]:
        age = max(self.monotonic() - self.worker.counters.turned_at, 0.0)
        ok = age <= self.stale_after
        return ok, {"loop_turned_seconds_ago": round(age, 3), "stale_after": self.stale_after}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        error = self.probe()
        pool = self.worker.pool
        children = list(pool.children)  # a copy: the loop may replace the list's items
        up = sum(1 for c in children if c.ready and not c.stopping)
        detail: dict[str, Any] = {
            "database": "ok" if error is None else f"unreachable: {error}",
            "children_ready": up,
            "children_wanted": pool.max_processes,
        }
        return error is None and up > 0, detail


class HealthServer:
    """The HTTP side: ``start()`` binds (a taken port is a ConfigError) and serves from a
    daemon thread; ``stop()`` shuts it down."""

    def __init__(self, health: Health, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.health = health
        routes: dict[str, Callable[[], tuple[bool, dict[str, Any]]]] = {
            "/livez": health.live,
            "/readyz": health.ready,
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = routes.get(self.path.split("?", 1)[0])
                if check is None:
                    self._answer(404, {"status": "not found", "paths": sorted(routes)})
                    return
                try:
                    ok, detail = check()
                except Exception as exc:  # a check that raises is a failing check
                    ok, detail = False, {"error": f"{type(exc).__name__}: {exc}"}
                self._answer(200 if ok else 503, {"status": "ok" if ok else "failing", **detail})

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes come every few seconds: not worth a line each

        if not 0 <= port <= 65535:
            raise ConfigError(f"--health-port {port} is not a TCP port: use 1 to 65535")
        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve health checks on {host}:{port} ({exc.strerror or exc}): "
                "choose a free --health-port"
            ) from None
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.host = host
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="corequeue-health", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health checks on http://%s:%d/livez and /readyz", self.host, self.port)
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.shutdown()
            self.server.server_close()
        self._thread.join(5)


def serve_health(
    worker: Watched, database_url: str, *, host: str, port: int, poll_interval: float
) -> tuple[HealthServer, DatabaseProbe]:
    """Start the health server of ``worker`` (the command line's ``--health-port``)."""
    probe = DatabaseProbe(database_url)
    health = Health(worker, probe, stale_after=stale_after_for(poll_interval))
    try:
        return HealthServer(health, host=host, port=port).start(), probe
    except BaseException:
        probe.dispose()
        raise
