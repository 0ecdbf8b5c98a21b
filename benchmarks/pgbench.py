"""The pgbench ceiling: corequeue's lifecycle SQL (insert, claim with SKIP LOCKED, complete: a
success is recorded on its job row, with no attempt row) on corequeue's own tables, ``batch``
rows per statement, each statement its own transaction as in the worker. jobs/s = pgbench's
script executions per second x batch."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from benchmarks.harness import Context, scratch_database, sqlalchemy_url

SCRIPT = "\n".join(
    [
        r"\set r random(1, 2000000000)",
        "INSERT INTO corequeue_jobs (name, queue, priority, state, params, run_at, created_at, "
        "attempts, max_attempts, unique_key, source) SELECT 'benchmarks.jobs.Noop', 'default', 0, "
        "'requested', '{{}}', now(), now(), 0, 1, '', '' FROM generate_series(1, {batch});",
        "UPDATE corequeue_jobs SET state = 'running', lease = 'L:client_id-:r', "
        "worker_id = 'W:client_id-:r', started_at = now(), attempts = attempts + 1 "
        "WHERE id = ANY(ARRAY(SELECT id FROM corequeue_jobs WHERE state = 'requested' "
        "AND run_at <= now() ORDER BY priority DESC, run_at, id LIMIT {batch} "
        "FOR UPDATE SKIP LOCKED)) RETURNING id, name, params, queue, priority, run_at, attempts, "
        "max_attempts, timeout;",
        # A success is kept on the job row alone (no attempt row: queries.ON_JOB_ROW).
        "UPDATE corequeue_jobs SET state = 'succeeded', lease = NULL, finished_at = now(), "
        "started_at = now(), result = 'null' "
        "WHERE worker_id = 'W:client_id-:r' AND state = 'running' AND lease = 'L:client_id-:r' "
        "RETURNING id;",
        "",
    ]
)


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    return str(candidates[0]) if candidates else None


def pgbench(ctx: Context, *, batch: int, seconds: float, clients: int = 2) -> dict[str, Any]:
    exe = find_pgbench()
    if exe is None:
        return {"error": "pgbench not found (install postgresql-client / server packages)"}
    from corequeue.store.queries import Store

    with scratch_database(ctx, "pgb") as url, tempfile.TemporaryDirectory() as tmp:
        store = Store.from_url(sqlalchemy_url(url))
        store.migrate()
        store.dispose()
        script = Path(tmp) / "lifecycle.sql"
        script.write_text(SCRIPT.format(batch=batch))
        u = make_url(url)
        cmd = [
            exe,
            "-n",
            "-h",
            u.host or "127.0.0.1",
            "-p",
            str(u.port or 5432),
            "-U",
            u.username or "postgres",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(int(seconds)),
            "-f",
            str(script),
            u.database or "",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
    if proc.returncode != 0 or not match:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    tps = float(match.group(1))
    failed = re.search(r"number of failed transactions: (\d+)", proc.stdout)
    return {
        "batch": batch,
        "clients": clients,
        "scripts_per_s": tps,
        "jobs_per_s": tps * batch,
        "failed": int(failed.group(1)) if failed else 0,
    }
