"""The dashboard and ``/metrics`` at scale (issue 24): response times with millions of job rows.

    python -m benchmarks.dashboard_scale [--admin-url URL] [--rows 2000000] [--repeat 20]

Creates a scratch PostgreSQL database on the server of ``--admin-url``, seeds ``--rows`` jobs in
one INSERT ... SELECT over generate_series (``store.support.seed_history``: 20 job names, 5
queues, 30 days of history, 1 % failed, the newest 10,000 waiting), then requests each page
``--repeat`` times in process (Starlette's TestClient: the application's own time, no network)
and prints p50, p95 and max per page, marking p95 over the 300 ms budget. The database is
dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from starlette.testclient import TestClient

from corequeue.store.queries import Store
from corequeue.store.servers import create_database, drop_database
from corequeue.store.support import seed_history
from corequeue.web import create_app

BUDGET_MS = 300.0


def pages(last_id: int, day: date) -> list[str]:
    """Every page measured: the overview, /jobs with each filter, a job, a job name's page,
    the metrics. ``day``: a day of the seeded history, for a date filter that matches."""
    states = ("requested", "running", "succeeded", "failed", "cancelled")
    return [
        "/",
        "/api/overview",
        "/jobs",
        *(f"/jobs?state={s}" for s in states),
        "/jobs?queue=q3",
        "/jobs?job=bench.jobs.Job7",
        "/jobs?state=failed&queue=q0&job=bench.jobs.Job0",
        f"/jobs?q={last_id - 5}",
        "/jobs?q=Job13",
        "/jobs?param=4242",
        "/jobs?from=2020-01-01T00:00&to=2020-01-02T00:00",
        f"/jobs?from={day}T00:00&to={day}T12:00",
        f"/jobs?from={day}T00:00&to={day}T12:00&state=failed",
        f"/jobs?before={last_id // 2}",
        f"/jobs/{last_id // 2}",
        f"/jobs/{last_id - 60}",
        "/names/bench.jobs.Job7",
        "/workers",
        "/schedules",
        "/metrics",
    ]


def percentile(ordered: Sequence[float], pct: float) -> float:
    return ordered[max(math.ceil(pct / 100 * len(ordered)), 1) - 1]


def measure(client: TestClient, path: str, repeat: int) -> list[float]:
    client.get(path)  # warm: the first request compiles templates, fills caches
    took = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path)
        took.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    return sorted(took)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--url", help="measure a database seeded before (--keep), seed none")
    args = parser.parse_args(argv)

    url = args.url or create_database(args.admin_url, prefix="cq_dashboard_bench_")
    store = Store.from_url(url)
    try:
        store.migrate()
        if not args.url:
            start = time.perf_counter()
            seed_history(store.engine, rows=args.rows, now=datetime.now(UTC))
            seconds = time.perf_counter() - start
            print(f"seeded {args.rows:,} jobs in {seconds:.1f} s", file=sys.stderr)
        failed = 0
        print(f"{'page':<58} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            day = (datetime.now(UTC) - timedelta(days=3)).date()
            for path in pages(args.rows, day):
                took = measure(client, path, args.repeat)
                p95 = percentile(took, 95)
                over = p95 > BUDGET_MS
                failed += over
                print(
                    f"{path:<58} {percentile(took, 50):>8.1f} {p95:>8.1f} {took[-1]:>8.1f}"
                    + ("  OVER" if over else "")
                )
        print(f"{failed} page(s) over {BUDGET_MS:.0f} ms at p95 ({args.rows:,} rows)")
        return 1 if failed else 0
    finally:
        store.dispose()
        if args.keep or args.url:
            print(f"kept {url}", file=sys.stderr)
        else:
            drop_database(args.admin_url, url)


if __name__ == "__main__":
    sys.exit(main())
