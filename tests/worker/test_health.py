"""The health checks' rules (corequeue.worker.health), without a worker process; the real
worker's /livez and /readyz are in tests/reliability/test_health.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corequeue.core.errors import ConfigError
from corequeue.store.health import DatabaseProbe
from corequeue.worker.counters import Counters
from corequeue.worker.health import Health, HealthServer, stale_after_for


@dataclass
class _Child:
    ready: bool = True
    stopping: bool = False


@dataclass
class _Pool:
    children: list[_Child] = field(default_factory=lambda: [_Child()])
    max_processes: int = 2


@dataclass
class _Worker:
    counters: Counters = field(default_factory=Counters)
    pool: _Pool = field(default_factory=_Pool)


def test_livez_fails_once_the_loop_has_not_turned_for_stale_after() -> None:
    worker = _Worker()
    clock = [worker.counters.turned_at + 5]
    health = Health(worker, lambda: None, stale_after=30, monotonic=lambda: clock[0])
    assert health.live()[0]
    clock[0] += 26
    ok, detail = health.live()
    assert not ok and detail["loop_turned_seconds_ago"] == pytest.approx(31)
    worker.counters.woke()  # the loop turns again
    clock[0] = worker.counters.turned_at + 1
    assert health.live()[0]


def test_stale_after_is_well_past_the_polling_interval() -> None:
    assert stale_after_for(1.0) == 30.0
    assert stale_after_for(60.0) == 300.0


def test_readyz_needs_the_database_and_a_ready_child() -> None:
    worker = _Worker()
    down: list[str | None] = [None]
    health = Health(worker, lambda: down[0], stale_after=30)
    ok, detail = health.ready()
    assert ok and detail == {"database": "ok", "children_ready": 1, "children_wanted": 2}
    down[0] = "connection refused"
    ok, detail = health.ready()
    assert not ok and detail["database"] == "unreachable: connection refused"
    down[0] = None
    worker.pool.children = [_Child(ready=False), _Child(stopping=True)]  # starting, leaving
    assert health.ready() == (False, {"database": "ok", "children_ready": 0, "children_wanted": 2})


def test_the_database_probe_answers_and_names_the_error(tmp_path: Path) -> None:
    probe = DatabaseProbe(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert probe() is None
    probe.dispose()
    missing = DatabaseProbe(f"sqlite:///{tmp_path / 'no' / 'such' / 'db.sqlite3'}")
    assert "unable to open database file" in (missing() or "")
    missing.dispose()


def test_the_server_answers_json_and_refuses_a_taken_port() -> None:
    worker = _Worker()
    server = HealthServer(Health(worker, lambda: None, stale_after=30)).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{url}/livez", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["status"] == "ok"
        worker.pool.children = []
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"{url}/readyz", timeout=5)
        assert failed.value.code == 503
        assert json.loads(failed.value.read())["status"] == "failing"
        with pytest.raises(ConfigError, match="choose a free --health-port"):
            HealthServer(Health(worker, lambda: None, stale_after=30), port=server.port)
    finally:
        server.stop()
    with pytest.raises(ConfigError, match="not a TCP port"):
        HealthServer(Health(worker, lambda: None, stale_after=30), port=70000)
