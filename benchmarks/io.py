"""The I/O-bound scenario (issue 19): jobs that wait 50 ms each, drained by one worker with
async jobs (default settings) and with sync jobs in threads (``--threads 20``); and worker
start-up, from ``corequeue run`` to the first job running, with 2 and 8 children.

Peers: PgQueuer and Procrastinate have no I/O-bound mode in benchmarks/peers.py and are not
installed in the project's venv: the issue's figures for them (measured on this machine,
same PostgreSQL) are the comparison, printed beside corequeue's.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    ROOT,
    Context,
    MemorySampler,
    env_with_path,
    median,
    read_stamps,
    scratch_database,
    sqlalchemy_url,
)
from benchmarks.scenarios import ENQUEUE_CHUNK, _stop, corequeue_window

#: The issue's side-by-side figures on this machine (jobs/s, 5,000 jobs awaiting 50 ms).
PEER_FIGURES = {"pgqueuer (batch 100, async)": 4500.0, "procrastinate (concurrency 50)": 407.0}


def _enqueue(url: str, n: int, kind: str) -> None:
    import corequeue
    from benchmarks.jobs import IoAsync, IoSync
    from corequeue import runtime

    cls = IoAsync if kind == "async" else IoSync
    store = corequeue.configure(url)
    try:
        store.migrate()
        for i in range(0, n, ENQUEUE_CHUNK):
            corequeue.enqueue_many([cls(0.05) for _ in range(min(ENQUEUE_CHUNK, n - i))])
    finally:
        runtime.reset()


def io_drain(ctx: Context, n: int, kind: str, *worker_args: str) -> dict[str, Any]:
    """Drain ``n`` jobs waiting 50 ms (``kind`` async or sync) with one burst worker."""
    with scratch_database(ctx, f"io{kind[:1]}") as admin_url:
        url = sqlalchemy_url(admin_url)
        _enqueue(url, n, kind)
        log_path = ctx.workdir / f"io-{kind}-{n}-{time.time_ns()}.log"
        cmd = [ctx.python, "-m", "corequeue", "run", "--burst", "--database-url", url]
        cmd += ["--import", "benchmarks.jobs", *worker_args]
        start = time.perf_counter()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env_with_path(), stdout=log, stderr=log)
        capped = False
        with MemorySampler(proc.pid) as mem:
            try:
                proc.wait(ctx.cap)
            except subprocess.TimeoutExpired:
                capped = True
                _stop(proc)
        wall = time.perf_counter() - start
        done, window = corequeue_window(url)
    return {
        "kind": kind,
        "args": list(worker_args),
        "backlog": n,
        "processed": done,
        "window_s": window,
        "rate": done / window if window and window > 0 else float("nan"),
        "wall_s": wall,
        "capped": capped,
        "parent_hwm_kb": mem.hwm_kb,
        "log": str(log_path),
    }


def startup(ctx: Context, processes: int) -> float:
    """Seconds from starting ``corequeue run`` to the first job's ``run()`` (one job waits)."""
    import corequeue
    from benchmarks.jobs import STAMP_ENV, Probe
    from corequeue import runtime

    with tempfile.TemporaryDirectory() as tmp, scratch_database(ctx, "up") as admin_url:
        url = sqlalchemy_url(admin_url)
        store = corequeue.configure(url)
        try:
            store.migrate()
            Probe(0).run_in_worker()
        finally:
            runtime.reset()
        stamps = Path(tmp) / "stamps"
        cmd = [ctx.python, "-m", "corequeue", "run", "--database-url", url, "--force"]
        cmd += ["--import", "benchmarks.jobs", "--max-processes", str(processes)]
        with open(ctx.workdir / f"startup-{processes}-{time.time_ns()}.log", "wb") as log:
            start = time.time()
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env_with_path({STAMP_ENV: str(stamps)}), stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + 30
            while not read_stamps(stamps) and time.monotonic() < deadline:
                time.sleep(0.005)
        finally:
            _stop(proc)
        found = read_stamps(stamps)
        return found[0] - start if found else float("nan")


def io(ctx: Context, n: int) -> dict[str, Any]:
    """The scenario: the two drains (``ctx.reps`` each, alternating) and start-up (5 each)."""
    drains: list[dict[str, Any]] = []
    for rep in range(ctx.reps):
        for kind, args in (("async", ()), ("sync", ("--threads", "20"))):
            ctx.say(f"io drain {kind} {' '.join(args)} {n:,} (rep {rep + 1}/{ctx.reps})")
            r = io_drain(ctx, n, kind, *args)
            ctx.say(f"   {r['processed']:,} jobs, {r['rate']:,.0f} jobs/s")
            drains.append(r)
    ups: dict[str, list[float]] = {"2": [], "8": []}
    for _ in range(5):
        for processes in (2, 8):
            ups[str(processes)].append(startup(ctx, processes))
    ctx.say(f"start-up medians: { ({k: round(median(v), 3) for k, v in ups.items()}) }")
    return {
        "drains": drains,
        "async_rate": median([r["rate"] for r in drains if r["kind"] == "async"]),
        "sync_threads_rate": median([r["rate"] for r in drains if r["kind"] == "sync"]),
        "startup_s": {k: median(v) for k, v in ups.items()},
        "startup_runs_s": ups,
        "peers_from_issue": PEER_FIGURES,
    }
