"""The scenarios of issue 7. Each returns plain dicts; ``__main__`` alternates, repeats and
reports. Every PostgreSQL measurement runs on a fresh database of its own."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.harness import (
    ROOT,
    Context,
    MemorySampler,
    env_with_path,
    median,
    percentile,
    read_stamps,
    run_json,
    scratch_database,
    sqlalchemy_url,
    wait_for_stamp,
)

WORKER_ARGS = ["run", "--burst", "--max-processes", "2", "--import", "benchmarks.jobs"]
ENQUEUE_CHUNK = 10_000
WARMUP_SAMPLES = 10


# -- corequeue ------------------------------------------------------------------------------


def corequeue_enqueue_backlog(url: str, n: int) -> float:
    """Migrate and enqueue ``n`` no-op jobs with enqueue_many. Returns the seconds it took."""
    import corequeue
    from benchmarks.jobs import Noop
    from corequeue import runtime

    store = corequeue.configure(url)
    try:
        store.migrate()
        start = time.perf_counter()
        for i in range(0, n, ENQUEUE_CHUNK):
            corequeue.enqueue_many([Noop() for _ in range(min(ENQUEUE_CHUNK, n - i))])
        return time.perf_counter() - start
    finally:
        runtime.reset()


def corequeue_worker(
    ctx: Context, url: str, log_path: Path, *, burst: bool = True, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    args = list(WORKER_ARGS) if burst else [a for a in WORKER_ARGS if a != "--burst"]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [ctx.python, "-m", "corequeue", *args, "--database-url", url],
            cwd=ROOT,
            env=env_with_path(env),
            stdout=log,
            stderr=log,
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def corequeue_window(url: str) -> tuple[int, float]:
    """(succeeded jobs, seconds from the first claim to the last recorded finish)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        with contextlib.closing(sqlite3.connect(path)) as db:
            n, first, last = db.execute(
                "SELECT count(*), min(started_at), max(finished_at) FROM corequeue_jobs "
                "WHERE state = 'succeeded'"
            ).fetchone()
        if not n:
            return 0, float("nan")
        t0 = datetime.fromisoformat(first).replace(tzinfo=UTC)
        t1 = datetime.fromisoformat(last).replace(tzinfo=UTC)
        return int(n), (t1 - t0).total_seconds()
    from benchmarks.harness import libpq

    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at)) "
            "FROM corequeue_jobs WHERE state = 'succeeded'"
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1]) if row[1] is not None else float("nan")


def corequeue_drain_at(ctx: Context, url: str, n: int, label: str) -> dict[str, Any]:
    """Enqueue ``n`` jobs into ``url`` (SQLAlchemy URL), drain with one burst worker."""
    enqueue_s = corequeue_enqueue_backlog(url, n)
    log_path = ctx.workdir / f"worker-{label}-{n}-{time.time_ns()}.log"
    start = time.perf_counter()
    proc = corequeue_worker(ctx, url, log_path)
    capped = False
    with MemorySampler(proc.pid) as mem:
        try:
            proc.wait(ctx.cap)
        except subprocess.TimeoutExpired:
            capped = True
            _stop(proc)
    wall = time.perf_counter() - start
    done, window = corequeue_window(url)
    log_text = log_path.read_text(errors="replace")
    return {
        "system": "corequeue",
        "backlog": n,
        "processed": done,
        "window_s": window,
        "rate": done / window if window and window > 0 else float("nan"),
        "wall_s": wall,
        "wall_rate": done / wall,
        "enqueue_s": enqueue_s,
        "capped": capped,
        "exit_code": proc.returncode,
        "parent_hwm_kb": mem.hwm_kb,
        "locked_errors": log_text.lower().count("database is locked"),
        "log": str(log_path),
    }


def corequeue_drain(ctx: Context, n: int) -> dict[str, Any]:
    with scratch_database(ctx, "cq") as url:
        return corequeue_drain_at(ctx, sqlalchemy_url(url), n, "pg")


# -- peers ----------------------------------------------------------------------------------


def peer_cmd(ctx: Context, system: str, mode: str, url: str, *more: str) -> list[str]:
    cmd = [ctx.peer_python, "-m", "benchmarks.peers", system, mode, "--url", url]
    cmd += ["--concurrency", str(ctx.procrastinate_concurrency)]
    cmd += ["--batch-size", str(ctx.pgqueuer_batch)]
    return cmd + list(more)


def peer_drain(ctx: Context, system: str, n: int, *more: str, task: str = "noop") -> dict[str, Any]:
    """One peer drains ``n`` jobs of ``task`` (noop, or io: awaiting 50 ms); ``more``: options
    for its worker (they win over the context's)."""
    with scratch_database(ctx, system[:6]) as url:
        run_json(peer_cmd(ctx, system, "install", url))
        enq = run_json(peer_cmd(ctx, system, "enqueue", url, "--n", str(n), "--task", task))
        start = time.perf_counter()
        out = run_json(peer_cmd(ctx, system, "drain", url, "--cap", str(ctx.cap), *more))
        wall = time.perf_counter() - start
    window = out["last"] - out["first"]
    return {
        "system": system,
        "backlog": n,
        "processed": out["count"],
        "window_s": window,
        "rate": out["count"] / window if window > 0 else float("nan"),
        "wall_s": wall,
        "wall_rate": out["count"] / wall,
        "enqueue_s": enq["seconds"],
        "capped": out["capped"],
    }


def drain(ctx: Context, system: str, n: int) -> dict[str, Any]:
    if system == "corequeue":
        return corequeue_drain(ctx, n)
    return peer_drain(ctx, system, n)


# -- pick-up latency ------------------------------------------------------------------------


def _latencies(commits: dict[int, float], stamps: dict[int, float]) -> dict[str, Any]:
    ms = [
        (stamps[s] - commits[s]) * 1000
        for s in sorted(commits)
        if s >= WARMUP_SAMPLES and s in stamps
    ]
    return {
        "samples": len(ms),
        "missing": sum(1 for s in commits if s not in stamps),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
    }


def latency(ctx: Context, system: str, samples: int) -> dict[str, Any]:
    total = samples + WARMUP_SAMPLES
    with tempfile.TemporaryDirectory() as tmp, scratch_database(ctx, "lat") as url:
        stamps = Path(tmp) / "stamps"
        if system == "corequeue":
            return {"system": system} | _corequeue_latency(ctx, url, stamps, total)
        run_json(peer_cmd(ctx, system, "install", url))
        with open(Path(tmp) / "worker.log", "wb") as log:
            proc = subprocess.Popen(
                peer_cmd(ctx, system, "worker", url, "--stamps", str(stamps)),
                cwd=ROOT,
                env=env_with_path(),
                stdout=log,
                stderr=log,
            )
        try:
            time.sleep(3.0)  # started and listening
            out = run_json(
                peer_cmd(
                    ctx, system, "probe", url, "--stamps", str(stamps), "--samples", str(total)
                )
            )
        finally:
            _stop(proc)
        commits = {int(k): float(v) for k, v in out["commits"].items()}
        return {"system": system} | _latencies(commits, read_stamps(stamps))


def _corequeue_latency(ctx: Context, url: str, stamps: Path, total: int) -> dict[str, Any]:
    import corequeue
    from benchmarks.jobs import STAMP_ENV, Probe
    from corequeue import runtime

    sa_url = sqlalchemy_url(url)
    store = corequeue.configure(sa_url)
    store.migrate()
    log_path = ctx.workdir / f"latency-worker-{time.time_ns()}.log"
    proc = corequeue_worker(ctx, sa_url, log_path, burst=False, env={STAMP_ENV: str(stamps)})
    commits: dict[int, float] = {}
    try:
        time.sleep(3.0)  # children spawned, LISTEN established, idle
        for sample in range(total):
            with store.engine.begin() as conn:
                Probe(sample).run_in_worker(connection=conn)
                commits[sample] = time.time()  # the commit follows immediately
            if not wait_for_stamp(stamps, sample):
                break
            time.sleep(random.uniform(0.01, 0.03))
    finally:
        _stop(proc)
        runtime.reset()
    return _latencies(commits, read_stamps(stamps))


# -- enqueue cost ---------------------------------------------------------------------------


def enqueue_cost(ctx: Context, *, singles: int) -> dict[str, Any]:
    """enqueue_many(10,000): time and statements; run_in_worker() vs one raw INSERT."""
    from sqlalchemy import event

    import corequeue
    from benchmarks.jobs import Noop
    from corequeue import runtime

    statements: list[str] = []

    class CountingCursor(psycopg.Cursor[Any]):
        """Counts what reaches the driver, whatever path it took through SQLAlchemy."""

        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            statements.append(str(query).split(None, 1)[0].upper())
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            statements.append(str(query).split(None, 1)[0].upper())
            return super().executemany(query, *args, **kwargs)

    def counting(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.cursor_factory = CountingCursor

    with scratch_database(ctx, "enq") as url:
        store = corequeue.configure(sqlalchemy_url(url))
        store.migrate()
        try:
            event.listen(store.engine, "connect", counting)
            store.engine.dispose()  # new connections, counting cursors
            many_s = []
            for _ in range(3):
                jobs = [Noop() for _ in range(10_000)]
                statements.clear()
                start = time.perf_counter()
                corequeue.enqueue_many(jobs)
                many_s.append(time.perf_counter() - start)
            many_statements = len(statements)
            statements.clear()
            Noop().run_in_worker()
            single_statements = len(statements)
            event.remove(store.engine, "connect", counting)
            store.engine.dispose()  # the timed runs below use plain cursors

            from benchmarks.harness import libpq

            raw_sql = (
                "INSERT INTO corequeue_jobs (name, queue, priority, state, params, run_at, "
                "created_at, attempts, max_attempts, unique_key, source) VALUES "
                "('benchmarks.jobs.Noop', 'default', 0, 'requested', '{}', now(), now(), 0, 1, "
                "'', '') RETURNING id"
            )
            single_s: list[float] = []
            raw_s: list[float] = []
            with psycopg.connect(libpq(url), autocommit=True) as raw:
                for _ in range(singles):
                    start = time.perf_counter()
                    Noop().run_in_worker()
                    single_s.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    raw.execute(raw_sql).fetchone()
                    raw_s.append(time.perf_counter() - start)
        finally:
            runtime.reset()
    return {
        "enqueue_many_10k_s": median(many_s),
        "enqueue_many_10k_statements": many_statements,
        "run_in_worker_ms": median(single_s) * 1000,
        "run_in_worker_statements": single_statements,
        "raw_insert_ms": median(raw_s) * 1000,
        "single_ratio": median(single_s) / median(raw_s),
    }


# -- SQLite ---------------------------------------------------------------------------------


def sqlite_drain(ctx: Context, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite3"
        return corequeue_drain_at(ctx, url, n, "sqlite")


def sqlite_two_workers(ctx: Context, n: int) -> dict[str, Any]:
    """Two burst workers on one SQLite file: no "database is locked", each job once."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite3"
        corequeue_enqueue_backlog(url, n)
        logs = [Path(tmp) / f"w{i}.log" for i in range(2)]
        start = time.perf_counter()
        procs = [corequeue_worker(ctx, url, log) for log in logs]
        for proc in procs:
            try:
                proc.wait(ctx.cap)
            except subprocess.TimeoutExpired:
                _stop(proc)
        wall = time.perf_counter() - start
        done, window = corequeue_window(url)
        with contextlib.closing(sqlite3.connect(f"{tmp}/bench.sqlite3")) as db:
            # Attempts started, from the job rows (a success has no attempt row of its own).
            attempts = db.execute("SELECT sum(attempts) FROM corequeue_jobs").fetchone()[0]
            dupes = db.execute("SELECT count(*) FROM corequeue_jobs WHERE attempts > 1").fetchone()[
                0
            ]
        text = "".join(log.read_text(errors="replace") for log in logs)
    return {
        "backlog": n,
        "processed": done,
        "rate": done / window if window > 0 else float("nan"),
        "wall_s": wall,
        "attempts": attempts,
        "jobs_run_twice": dupes,
        "locked_errors": text.lower().count("database is locked"),
        "exit_codes": [p.returncode for p in procs],
    }


def python_version() -> str:
    return sys.version.split()[0]
