"""The I/O-bound scenario (issue 19): jobs that wait 50 ms each, drained side by side by
corequeue (async jobs with default settings; sync jobs with ``--threads 20``), PgQueuer (batch
100, async entrypoint: its best configuration here) and Procrastinate (concurrency 50), the
systems alternating; worker start-up, from ``corequeue run`` to the first job running, with 2
and 8 children; and the RSS of the worker's parent and children over a 100,000-job I/O-bound
drain (sampled from /proc, reported at 10%, 50% and 90% of the drain's window).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.harness import (
    ROOT,
    Context,
    MemorySampler,
    Sampler,
    env_with_path,
    libpq,
    median,
    read_stamps,
    scratch_database,
    sqlalchemy_url,
)
from benchmarks.scenarios import ENQUEUE_CHUNK, _stop, corequeue_window, peer_drain

#: Procrastinate's concurrency in this scenario (the issue's best figure for it).
PROCRASTINATE_CONCURRENCY = 50
#: Where the RSS over a long drain is read, as fractions of the drain's window.
RSS_POINTS = {"start": 0.1, "middle": 0.5, "end": 0.9}


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


class TreeSampler(Sampler):
    """Samples the RSS of a worker process and of the processes under it from /proc every
    ``interval`` seconds: (time.time(), parent kB, {role: kB}), a role being "fork server",
    "resource tracker" (the worker's own children, by their command line) or "child PID" (a
    job child: forked from the fork server)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(pid, interval)
        self.samples: list[tuple[float, int, dict[str, int]]] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            parent = _rss_kb(self.pid)
            if parent is None:
                return
            roles: dict[str, int] = {}
            for pid in _children(self.pid):
                cmdline = _read(f"/proc/{pid}/cmdline")
                role = "fork server" if "forkserver" in cmdline else "resource tracker"
                roles[role] = _rss_kb(pid) or 0
                for child in _children(pid):
                    roles[f"child {child}"] = _rss_kb(child) or 0
            self.samples.append((time.time(), parent, roles))
            self._stop.wait(self.interval)

    def at(self, when: float) -> dict[str, Any] | None:
        """The sample nearest to ``when`` (epoch seconds), in MiB."""
        if not self.samples:
            return None
        t, parent, roles = min(self.samples, key=lambda s: abs(s[0] - when))
        kids = {k: kb / 1024 for k, kb in sorted(roles.items()) if k.startswith("child")}
        return {
            "t": t,
            "parent_mib": parent / 1024,
            "children_mib": kids,
            "others_mib": {k: kb / 1024 for k, kb in roles.items() if k not in kids},
        }


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _rss_kb(pid: int) -> int | None:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def _children(pid: int) -> list[int]:
    return [int(k) for k in _read(f"/proc/{pid}/task/{pid}/children").split()]


def _window_epochs(url: str) -> tuple[float, float] | None:
    """(first start, last finish) of the succeeded jobs, as epoch seconds."""
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)) "
            "FROM corequeue_jobs WHERE state = 'succeeded'"
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return float(row[0]), float(row[1])


def io_drain(
    ctx: Context, n: int, kind: str, *worker_args: str, rss: bool = False
) -> dict[str, Any]:
    """Drain ``n`` jobs waiting 50 ms (``kind`` async or sync) with one burst worker; with
    ``rss``, the RSS of the worker's processes at 10%, 50% and 90% of the drain."""
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
        with MemorySampler(proc.pid) as mem, TreeSampler(proc.pid) as tree:
            try:
                proc.wait(ctx.cap)
            except subprocess.TimeoutExpired:
                capped = True
                _stop(proc)
        wall = time.perf_counter() - start
        done, window = corequeue_window(url)
        epochs = _window_epochs(url) if rss else None
    out: dict[str, Any] = {
        "system": f"corequeue {kind}",
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
    if epochs is not None:
        first, last = epochs
        out["rss"] = {name: tree.at(first + f * (last - first)) for name, f in RSS_POINTS.items()}
    return out


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


def startups(ctx: Context, reps: int = 5) -> dict[str, Any]:
    """Start-up ``reps`` times with 2 and with 8 children, alternating: the medians
    (``startup_s``) and every run (``startup_runs_s``), by number of children."""
    ups: dict[str, list[float]] = {"2": [], "8": []}
    for _ in range(reps):
        for processes in (2, 8):
            ups[str(processes)].append(startup(ctx, processes))
    ctx.say(f"start-up medians: { ({k: round(median(v), 3) for k, v in ups.items()}) }")
    return {"startup_s": {k: median(v) for k, v in ups.items()}, "startup_runs_s": ups}


def _runners(ctx: Context, n: int) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The I/O-bound drains to alternate: corequeue's two and the installed peers'."""
    runners: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("corequeue async", lambda: io_drain(ctx, n, "async")),
        ("corequeue sync --threads 20", lambda: io_drain(ctx, n, "sync", "--threads", "20")),
    ]
    if "pgqueuer" in ctx.peers:
        batch = ("--batch-size", str(ctx.pgqueuer_batch))
        runners.append(("pgqueuer", lambda: peer_drain(ctx, "pgqueuer", n, *batch, task="io")))
    if "procrastinate" in ctx.peers:
        conc = ("--concurrency", str(PROCRASTINATE_CONCURRENCY))
        runners.append(
            ("procrastinate", lambda: peer_drain(ctx, "procrastinate", n, *conc, task="io"))
        )
    return runners


def io(ctx: Context, n: int, rss_n: int) -> dict[str, Any]:
    """The scenario: the drains (``ctx.reps`` each, alternating, the order rotating),
    start-up (5 each) and the RSS over one drain of ``rss_n`` async jobs."""
    runners = _runners(ctx, n)
    drains: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in runners}
    for rep in range(ctx.reps):
        k = rep % len(runners)
        for label, run in runners[k:] + runners[:k]:
            ctx.say(f"io drain {label} {n:,} (rep {rep + 1}/{ctx.reps})")
            r = run()
            ctx.say(f"   {r['processed']:,} jobs, {r['rate']:,.0f} jobs/s")
            drains[label].append(r)
    ups = startups(ctx)
    ctx.say(f"io drain corequeue async {rss_n:,}, RSS sampled")
    long = io_drain(ctx, rss_n, "async", rss=True)
    ctx.say(f"   {long['processed']:,} jobs, {long['rate']:,.0f} jobs/s")
    return {
        "backlog": n,
        "drains": drains,
        "rates": {label: median([r["rate"] for r in runs]) for label, runs in drains.items()},
        **ups,
        "rss_drain": long,
    }
