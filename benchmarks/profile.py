"""Where the time goes in a corequeue drain: py-spy on the worker parent, statement timings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, Context, env_with_path, scratch_database, sqlalchemy_url
from benchmarks.scenarios import corequeue_enqueue_backlog, corequeue_window

#: Functions whose inclusive share of a thread's samples we report.
WATCH = {
    "EndingQueries.job_finish_many": "record endings (one statement)",
    "ClaimQueries.job_claim_many": "claim (UPDATE ... SKIP LOCKED) and its rows",
    "ReadQueries.job_next_run_at": "next run_at look-up (store.job_next_run_at)",
    "Worker._take_claim": "apply a claim (hand the jobs to the children)",
    "Worker._take_record": "apply recorded endings (log lines)",
    "log_ends": "per-job logging (worker.joblog.log_ends)",
    "decide": "lifecycle decision (worker.endings.decide)",
    "ProcessPool.submit": "hand-off to children (pool.submit: pickle + send)",
    "ProcessPool.collect": "results from children (pool.collect: read + unpickle)",
    "ProcessPool.wait": "waiting (pool.wait: poll)",
    "Worker._maintain": "maintenance ticks (worker._maintain)",
    "Worker._settle": "waiting for the database lanes (worker._settle)",
    "DefaultDialect.do_execute": "in the driver: SQL round trips (cursor.execute)",
    "DefaultDialect.do_commit": "in the driver: COMMIT round trips (fsync wait)",
    "run_task": "running jobs in the parent (should be 0)",
}

#: A stack belongs to the first thread whose marker frame it contains (else "other").
THREADS = {
    "main thread": "Worker._loop",
    "claim lane": "ClaimLane.claim.<locals>.claim",
    "record lane": "RecordLane.record.<locals>.<lambda>",
}


def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def summarize(raw: str) -> dict[str, Any]:
    """Per thread of the worker parent (main loop, database cycles), inclusive shares of the
    watched functions over that thread's samples, and its top frames (py-spy raw format:
    ``frame;frame;... count``, root first)."""
    totals: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = {t: Counter() for t in THREADS}
    leaf: dict[str, Counter[str]] = {t: Counter() for t in THREADS}
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        names = [re.sub(r" \(.*$", "", f) for f in stack.split(";")]
        thread = next((t for t, marker in THREADS.items() if marker in names), None)
        if thread is None:
            continue
        count = int(n)
        totals[thread] += count
        for name in set(names):
            if name in WATCH:
                inclusive[thread][WATCH[name]] += count
        leaf[thread][re.sub(r":\d+\)$", ")", stack.split(";")[-1])] += count
    threads = {}
    for t in THREADS:
        total = totals[t]
        if not total:
            continue
        threads[t] = {
            "samples": total,
            "inclusive_pct": {k: 100 * v / total for k, v in inclusive[t].most_common()},
            "top_self_pct": {k: 100 * v / total for k, v in leaf[t].most_common(8)},
        }
    return {"threads": threads}


def profile(ctx: Context, n: int) -> dict[str, Any]:
    spy = find_py_spy()
    with scratch_database(ctx, "prof") as url:
        sa_url = sqlalchemy_url(url)
        corequeue_enqueue_backlog(sa_url, n)
        log = ctx.workdir / f"profiled-worker-{time.time_ns()}.log"
        proc = subprocess.Popen(
            [ctx.python, "-m", "benchmarks.profiled_worker", sa_url, str(log)],
            cwd=ROOT,
            env=env_with_path(),
            stdout=subprocess.PIPE,
            text=True,
        )
        raw_path = ctx.workdir / "corequeue-drain.pyspy.txt"
        svg_path = ctx.workdir / "corequeue-drain.svg"
        spies = []
        if spy is not None:
            base = [spy, "record", "--pid", str(proc.pid), "--rate", "250", "--threads", "--idle"]
            spies.append(
                subprocess.Popen(
                    [*base, "--format", "raw", "-o", str(raw_path)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        out, _ = proc.communicate(timeout=max(ctx.cap * 3, 300))
        for s in spies:
            s.wait(30)
        done, window = corequeue_window(sa_url)
    import json

    result: dict[str, Any] = json.loads([x for x in out.splitlines() if x.strip()][-1])
    result["processed"] = done
    result["rate"] = done / window if window > 0 else float("nan")
    if spy is None:
        result["py_spy"] = "py-spy not installed (pip install py-spy)"
    elif raw_path.exists():
        result["py_spy"] = summarize(raw_path.read_text()) | {"raw": str(raw_path)}
        flame = shutil.which("flamegraph.pl")
        if flame:
            with open(svg_path, "w") as f:
                subprocess.run([flame, str(raw_path)], stdout=f, check=False)
    return result
