"""Flow control's cost (issue 23): a no-op drain with a queue concurrency limit equal to the
worker's children, and with a per-key concurrency limit of 1 over 100 keys (jobs interleaved),
each against the unlimited drain of the same run; the three alternate, repetition by
repetition, each in a fresh database. The target: each limited drain at least 80% of the
unlimited one (median of the repetitions).

    python -m benchmarks.flow [--n 20000] [--reps 3]   # or: python -m benchmarks --only flow
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    ROOT,
    Context,
    check_local,
    env_with_path,
    median,
    scratch_database,
    sqlalchemy_url,
)
from benchmarks.scenarios import ENQUEUE_CHUNK, _stop, corequeue_window

#: The worker: as the drain scenario's (two children), also importing the keyed job.
CHILDREN = 2
WORKER = ["run", "--burst", "--max-processes", str(CHILDREN), "--import", "benchmarks.flow_jobs"]
VARIANTS = ("unlimited", "queue_limit", "per_key_100")
KEYS = 100


def _enqueue(url: str, variant: str, n: int) -> None:
    import corequeue
    from benchmarks.flow_jobs import KeyedNoop
    from benchmarks.jobs import Noop
    from corequeue import runtime

    store = corequeue.configure(url)
    try:
        store.migrate()
        for i in range(0, n, ENQUEUE_CHUNK):
            size = min(ENQUEUE_CHUNK, n - i)
            if variant == "per_key_100":
                corequeue.enqueue_many([KeyedNoop(k % KEYS) for k in range(i, i + size)])
            else:
                corequeue.enqueue_many([Noop() for _ in range(size)])
    finally:
        runtime.reset()


def drain(ctx: Context, variant: str, n: int) -> dict[str, Any]:
    with scratch_database(ctx, "flow") as libpq_url:
        url = sqlalchemy_url(libpq_url)
        _enqueue(url, variant, n)
        args = list(WORKER)
        if variant == "queue_limit":
            config = ctx.workdir / "flow-pyproject.toml"
            config.write_text(f"[tool.corequeue.queue.default]\nconcurrency_limit = {CHILDREN}\n")
            args += ["--config", str(config)]
        log_path = ctx.workdir / f"worker-flow-{variant}-{time.time_ns()}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [ctx.python, "-m", "corequeue", *args, "--database-url", url],
                cwd=ROOT,
                env=env_with_path(None),
                stdout=log,
                stderr=log,
            )
        try:
            proc.wait(ctx.cap)
        except subprocess.TimeoutExpired:
            _stop(proc)
        done, window = corequeue_window(url)
    return {"variant": variant, "processed": done, "window_s": window, "rate": done / window}


def flow(ctx: Context, n: int) -> dict[str, Any]:
    """Alternate the three drains ``ctx.reps`` times; medians and ratios to unlimited."""
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for rep in range(ctx.reps):
        for variant in VARIANTS:
            ctx.say(f"flow drain {rep + 1}/{ctx.reps}: {variant}, {n:,} no-op jobs")
            runs[variant].append(drain(ctx, variant, n))
    rates = {v: median([r["rate"] for r in rs]) for v, rs in runs.items()}
    return {
        "backlog": n,
        "children": CHILDREN,
        "runs": runs,
        "rates": rates,
        "ratios": {v: rates[v] / rates["unlimited"] for v in VARIANTS if v != "unlimited"},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.flow")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--workdir", default="/tmp/corequeue-bench")
    args = p.parse_args(argv)
    check_local(args.pg_url)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(admin_url=args.pg_url, reps=args.reps, workdir=workdir, cap=300.0)
    out = flow(ctx, args.n)
    for variant in VARIANTS:
        ratio = out["ratios"].get(variant)
        extra = (
            ""
            if ratio is None
            else f"  {ratio:.2f}x unlimited ({'ok' if ratio >= 0.8 else 'MISSED'} >= 0.80)"
        )
        print(f"{variant:<12} {out['rates'][variant]:>9,.0f} jobs/s{extra}")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
