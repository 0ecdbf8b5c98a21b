"""A burst corequeue worker run in this process, timing every SQL statement by kind.

``python -m benchmarks.profiled_worker URL`` prints, as JSON on its last line, the wall time and
per-statement-kind counts and seconds (wall time in the driver: round trip plus server work).
The benchmarks attach py-spy to this process for the Python side.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import event


def kind(statement: str) -> str:
    text = " ".join(statement.split()).upper()
    if text.startswith("UPDATE COREQUEUE_JOBS SET STATE") and "SKIP LOCKED" in text:
        return "claim (UPDATE ... SKIP LOCKED)"
    if text.startswith("WITH V AS") and "COREQUEUE_ATTEMPTS" in text:
        return "record endings (UPDATE; attempt rows for failures; one statement)"
    if text.startswith("SELECT COREQUEUE_JOBS.ID, COREQUEUE_JOBS.LEASE"):
        return "finish: lease check (SELECT ... FOR UPDATE)"
    if text.startswith("UPDATE COREQUEUE_JOBS SET"):
        return "finish: UPDATE jobs"
    if text.startswith("INSERT INTO COREQUEUE_ATTEMPTS"):
        return "finish: INSERT attempts"
    if text.startswith("SELECT MIN("):
        return "next run_at look-up"
    return "other: " + text[:50]


def main(argv: list[str]) -> int:
    from corequeue import runtime
    from corequeue.config import load_settings
    from corequeue.logs import configure_logging
    from corequeue.worker import Worker, worker_store

    url = argv[0]
    if len(argv) > 1:  # the log file takes stderr, as when `corequeue run` is redirected
        log_file = open(argv[1], "ab")  # noqa: SIM115
        os.dup2(log_file.fileno(), sys.stderr.fileno())
    configure_logging("INFO", buffered=True)  # as `corequeue run` does
    settings = load_settings(
        overrides={"database_url": url, "imports": ["benchmarks.jobs"], "max_processes": 2}
    )
    import benchmarks.jobs  # noqa: F401

    runtime.configure(url)
    store = worker_store(settings)
    stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    started: dict[int, float] = {}

    @event.listens_for(store.engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        started[id(cursor)] = time.perf_counter()

    @event.listens_for(store.engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        t = time.perf_counter() - started.pop(id(cursor), time.perf_counter())
        entry = stats[kind(statement)]
        entry[0] += 1
        entry[1] += t

    # The claim goes through the driver directly (Store._driver), where no event fires.
    driver = store._driver
    if driver is not None:

        def timed(sql: str, params: dict[str, Any]) -> Any:
            t = time.perf_counter()
            try:
                return driver(sql, params)
            finally:
                entry = stats[kind(sql)]
                entry[0] += 1
                entry[1] += time.perf_counter() - t

        store.__dict__["_driver"] = timed  # the cached property's value, wrapped

    @event.listens_for(store.engine, "commit")
    def commit(conn: Any) -> None:
        stats["COMMIT (count only)"][0] += 1

    start = time.perf_counter()
    Worker(store, settings, burst=True).run(install_signals=False)
    wall = time.perf_counter() - start
    out = {
        "wall_s": wall,
        "statements": {k: {"count": int(v[0]), "seconds": v[1]} for k, v in stats.items()},
    }
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
