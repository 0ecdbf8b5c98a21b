"""``corequeue run --health-port``: /livez and /readyz of a real worker, with the database cut
by the fault harness's TCP proxy (the shared server keeps running)."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from testing.faults import TcpProxy, wait_for
from tests.reliability.conftest import Spawner


@pytest.fixture
def proxy(pg_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy.for_url(pg_url).start()
    try:
        yield proxy
    finally:
        proxy.close()


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_livez_and_readyz_of_a_real_worker_through_a_database_outage(
    pg_url: str, proxy: TcpProxy, spawn: Spawner
) -> None:
    worker = spawn(proxy.url(pg_url), "--max-processes", "1", "--health-port", "0")
    worker.wait_log("health checks on http://", timeout=60)
    found = re.search(r"health checks on (http://127\.0\.0\.1:\d+)/livez", worker.log())
    assert found, worker.log()
    base = found.group(1)

    ready = wait_for(
        lambda: (r := get(f"{base}/readyz"))[0] == 200 and r,
        timeout=60,
        what="/readyz to answer 200",
        detail=worker.log,
    )
    assert ready[1]["database"] == "ok" and ready[1]["children_ready"] == 1, ready
    live = get(f"{base}/livez")
    assert live[0] == 200 and live[1]["status"] == "ok", live
    assert get(f"{base}/nothing")[0] == 404

    proxy.cut()  # PostgreSQL is gone for the worker
    failing = wait_for(
        lambda: (r := get(f"{base}/readyz"))[0] == 503 and r,
        timeout=30,
        what="/readyz to fail while the database is cut",
        detail=worker.log,
    )
    assert failing[1]["status"] == "failing"
    assert failing[1]["database"].startswith("unreachable: "), failing
    # The loop keeps turning through an outage (it retries at its own pace): still alive.
    assert get(f"{base}/livez")[0] == 200

    proxy.restore()
    wait_for(
        lambda: get(f"{base}/readyz")[0] == 200,
        timeout=30,
        what="/readyz to recover with the database",
        detail=worker.log,
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(60) == 0, worker.log()
