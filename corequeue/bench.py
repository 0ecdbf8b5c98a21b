"""``corequeue bench``: drain throughput and idle pick-up latency on your own database.

It enqueues no-op jobs on a queue of its own (``bench-<random>``), runs a worker that serves only
that queue as a subprocess (default settings, ``--max-processes`` children), and deletes the jobs
afterwards. The tables must exist (``corequeue migrate``). Workers of yours that serve every
queue would share the bench jobs and skew the figures: run it where no other worker is busy.
The side-by-side comparison with other queues is ``python -m benchmarks`` in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from corequeue.commands import CONFIG_HELP, JSON_HELP
from corequeue.jobs import Job, register_job

#: File the probe job appends "sample started_at" lines to (set for the worker it starts).
STAMP_ENV = "COREQUEUE_BENCH_STAMPS"
_CHUNK = 10_000


@register_job(alias="corequeue-bench-noop")
class BenchNoop(Job):
    """Does nothing: the bench measures the queue."""

    def run(self) -> None:
        return None


@register_job(alias="corequeue-bench-probe")
class BenchProbe(Job):
    """Appends ``time.time()`` at the start of ``run()`` to the stamp file."""

    def __init__(self, sample: int) -> None:
        self.sample = sample

    def run(self) -> None:
        started = time.time()
        fd = os.open(os.environ[STAMP_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{self.sample} {started:.6f}\n".encode())
        finally:
            os.close(fd)


def add_command(subparsers: Any) -> None:
    """Register ``corequeue bench`` (called by corequeue.cli)."""
    p = subparsers.add_parser(
        "bench",
        help="measure drain throughput and pick-up latency on this database",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database-url", help="database URL (default from config, else SQLite)")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument(
        "--jobs", type=int, default=10_000, metavar="N", help="no-op jobs to drain (default 10000)"
    )
    p.add_argument(
        "--samples", type=int, default=200, help="pick-up latency samples (default 200; 0: skip)"
    )
    p.add_argument(
        "--max-processes", type=int, default=2, metavar="N", help="worker children (default 2)"
    )
    p.add_argument(
        "--timeout", type=float, default=600.0, help="seconds the drain may take (default 600)"
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(handler=cmd_bench, imports=[])


def cmd_bench(args: argparse.Namespace) -> int:
    from corequeue.commands import open_store, settings_from

    settings = settings_from(args)
    store = open_store(settings)
    store.check_schema()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    url = store.url.render_as_string(hide_password=False)
    where = store.url.render_as_string(hide_password=True)
    result: dict[str, Any] = {
        "database": where,
        "queue": queue,
        "jobs": args.jobs,
        "max_processes": args.max_processes,
    }
    base = [
        sys.executable,
        "-m",
        "corequeue",
        "--log-level",
        args.log_level,
        "run",
        "--database-url",
        url,
        "--import",
        "corequeue.bench",
        "--queue",
        queue,
        "--max-processes",
        str(args.max_processes),
    ]
    if args.config:
        base += ["--config", args.config]
    try:
        with tempfile.TemporaryDirectory(prefix="corequeue-bench-") as tmp:
            result |= _drain(store, queue, base, args.jobs, args.timeout, Path(tmp))
            if args.samples > 0:
                result |= _latency(store, queue, base, args.samples, Path(tmp))
    finally:
        result["deleted"] = _cleanup(store, queue)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_table(result))
    return 0


def _drain(
    store: Any, queue: str, base: list[str], n: int, timeout: float, tmp: Path
) -> dict[str, Any]:
    from corequeue.jobs import enqueue_many

    start = time.perf_counter()
    for i in range(0, n, _CHUNK):
        enqueue_many([BenchNoop() for _ in range(min(_CHUNK, n - i))], queue=queue)
    enqueue_s = time.perf_counter() - start
    start = time.perf_counter()
    with open(tmp / "drain.log", "wb") as log:
        proc = subprocess.Popen([*base, "--burst"], stdout=log, stderr=log)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        code = proc.returncode
    wall = time.perf_counter() - start
    done, first, last = store.job_succeeded_window(queue)
    window = (last - first).total_seconds() if done else float("nan")
    return {
        "enqueue_seconds": enqueue_s,
        "enqueue_jobs_per_s": n / enqueue_s if enqueue_s > 0 else float("nan"),
        "drained": int(done),
        "drain_seconds": window,
        "drain_jobs_per_s": done / window if done and window > 0 else float("nan"),
        "drain_wall_seconds": wall,
        "worker_exit_code": code,
    }


def _latency(store: Any, queue: str, base: list[str], samples: int, tmp: Path) -> dict[str, Any]:
    stamps = tmp / "stamps"
    env = dict(os.environ, **{STAMP_ENV: str(stamps)})
    with open(tmp / "latency.log", "wb") as log:
        proc = subprocess.Popen(base, stdout=log, stderr=log, env=env)
    warmup = 5
    commits: dict[int, float] = {}
    try:
        time.sleep(3.0)  # children started, LISTEN established, idle
        for sample in range(samples + warmup):
            with store.engine.begin() as conn:
                BenchProbe(sample).run_in_worker(queue=queue, connection=conn)
                commits[sample] = time.time()  # the commit follows at once
            if not _wait_for(stamps, sample, 10.0):
                break
            time.sleep(0.02)
    finally:
        _stop(proc)
    seen: dict[int, float] = {}
    if stamps.exists():
        for line in stamps.read_text().splitlines():
            key, at = line.split()
            seen[int(key)] = float(at)
    ms = sorted((seen[s] - commits[s]) * 1000 for s in commits if s >= warmup and s in seen)
    return {
        "latency_samples": len(ms),
        "latency_p50_ms": _pct(ms, 50),
        "latency_p99_ms": _pct(ms, 99),
        "latency_max_ms": ms[-1] if ms else float("nan"),
        "latency_mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


def _wait_for(path: Path, sample: int, timeout: float) -> bool:
    needle = f"\n{sample} ".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in b"\n" + path.read_bytes():
            return True
        time.sleep(0.0005)
    return False


def _pct(ordered: list[float], p: float) -> float:
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cleanup(store: Any, queue: str) -> int:
    deleted: int = store.job_delete_queue(queue)
    return deleted


def _table(r: dict[str, Any]) -> str:
    def f(x: float, spec: str) -> str:
        return "-" if x != x else format(x, spec)  # NaN

    rows = [
        ("database", r["database"]),
        ("worker", f"{r['max_processes']} child processes, queue {r['queue']}"),
        (
            "enqueue_many",
            f"{r['jobs']:,} jobs in {f(r['enqueue_seconds'], '.2f')} s "
            f"({f(r['enqueue_jobs_per_s'], ',.0f')} jobs/s)",
        ),
        (
            "drain",
            f"{r['drained']:,} jobs in {f(r['drain_seconds'], '.2f')} s, first claim to "
            f"last finish ({f(r['drain_jobs_per_s'], ',.0f')} jobs/s; "
            f"{f(r['drain_wall_seconds'], '.2f')} s with worker start-up)",
        ),
    ]
    if "latency_samples" in r:
        rows.append(
            (
                "pick-up latency",
                f"p50 {f(r['latency_p50_ms'], '.2f')} ms, p99 "
                f"{f(r['latency_p99_ms'], '.2f')} ms, max {f(r['latency_max_ms'], '.2f')} "
                f"ms ({r['latency_samples']} samples, committed enqueue to run())",
            )
        )
    rows.append(("cleanup", f"deleted {r['deleted']:,} bench job(s)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
