"""The worker's readiness probe: does the database answer a query now?"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from corequeue.store.engine import normalize_url

#: Seconds a probe may take to connect (psycopg's connect_timeout; PostgreSQL takes 2 at least).
PROBE_TIMEOUT = 3


class DatabaseProbe:
    """``probe()``: None when the database answers ``SELECT 1``, else the first line of the
    error. Each probe opens a connection of its own (no pool: a connection broken by an
    outage is never reused, and the worker's own connections are not touched), bounded by
    :data:`PROBE_TIMEOUT`; probes run one at a time."""

    def __init__(self, url: str) -> None:
        parsed = normalize_url(url)
        connect_args: dict[str, object] = {}
        if parsed.get_backend_name() == "postgresql":
            connect_args = {
                "connect_timeout": PROBE_TIMEOUT,
                "options": f"-c statement_timeout={PROBE_TIMEOUT * 1000}",
            }
        elif parsed.get_backend_name() == "sqlite":
            connect_args = {"timeout": PROBE_TIMEOUT}
        self.engine = sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            try:
                with self.engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
            except sa.exc.SQLAlchemyError as exc:
                orig = getattr(exc, "orig", None)
                text = str(orig or exc).strip()
                return text.splitlines()[0] if text else type(exc).__name__
        return None

    def dispose(self) -> None:
        self.engine.dispose()
