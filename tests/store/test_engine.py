"""The application's engine checks a pooled connection only after it sat idle (PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from corequeue.store.engine import create_engine, ping_after_idle


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def _counting_pings(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    real = engine.dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(real(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", do_ping)
    return pings


def test_a_connection_used_a_moment_ago_is_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(postgres_url)  # the application's engine: ping after 1 s idle
    pings = _counting_pings(engine, monkeypatch)

    first = _backend_pid(engine)
    second = _backend_pid(engine)

    assert second == first  # the same pooled connection, reused
    assert pings == []  # and no extra round trip before the query
    engine.dispose()


def test_a_dead_connection_idle_past_the_threshold_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(postgres_url, pool_pre_ping=False)
    ping_after_idle(engine, idle=0.0)  # every checkout counts as "after idle"
    pings = _counting_pings(engine, monkeypatch)
    dead = _backend_pid(engine)
    admin = create_engine(postgres_url)
    with admin.connect() as conn:
        # pg_terminate_backend(pid, timeout) waits until the backend is gone.
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": dead})
        conn.commit()

    replacement = _backend_pid(engine)  # no error: the dead connection was swapped out

    assert replacement != dead
    assert pings  # it was checked before use
    engine.dispose()
    admin.dispose()
