"""Runs one peer (Procrastinate or PgQueuer) for the benchmarks, in its own process.

``python -m benchmarks.peers SYSTEM MODE --url URL [...]`` prints one JSON object on its last
line. Modes: ``install`` (schema), ``enqueue`` (a backlog of no-op jobs, in bulk; with
``--task io``, jobs that each ``await asyncio.sleep(0.05)``: the I/O-bound scenario),
``drain`` (run one worker until the backlog is gone or ``--cap`` seconds passed),
``worker`` (run an idle worker until SIGTERM, for the latency scenario; the probe task appends
"sample time.time()" to ``--stamps``), ``probe`` (enqueue ``--samples`` probes one at a time,
each committed, waiting for each to run; prints the commit times).

This module imports neither corequeue nor the other peer, so it can run in a separate venv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

CHUNK = 5000
#: Seconds each job of the I/O-bound scenario (``--task io``) awaits.
IO_SECONDS = 0.05


class Tally:
    """What the jobs record: how many ran, the first start and the last end."""

    count = 0
    first = 0.0
    last = 0.0

    @classmethod
    def hit(cls, started: float | None = None) -> None:
        """One job ended now (``started``: when it began, for a job that waited)."""
        now = time.time()
        began = now if started is None else started
        if cls.count == 0 or began < cls.first:
            cls.first = began
        cls.count += 1
        cls.last = max(cls.last, now)

    @classmethod
    async def io(cls) -> None:
        """The I/O-bound job: await ``IO_SECONDS`` (an HTTP call, say)."""
        started = time.time()
        await asyncio.sleep(IO_SECONDS)
        cls.hit(started)

    @classmethod
    def as_dict(cls) -> dict[str, Any]:
        return {"count": cls.count, "first": cls.first, "last": cls.last}


def append_stamp(path: str, sample: int) -> None:
    started = time.time()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{sample} {started:.6f}\n".encode())
    finally:
        os.close(fd)


def wait_for_stamp(path: str, sample: int, timeout: float = 10.0) -> bool:
    """Wait until the stamp file holds ``sample`` (polled every 0.5 ms; cheap, small file)."""
    needle = f"\n{sample} ".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                if needle in b"\n" + f.read():
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    return False


# -- Procrastinate --------------------------------------------------------------------------


def procrastinate_app(url: str, stamps: str | None) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop() -> None:
        Tally.hit()

    @app.task(name="io")
    async def io() -> None:
        await Tally.io()

    @app.task(name="probe")
    async def probe(sample: int) -> None:
        assert stamps is not None
        append_stamp(stamps, sample)

    return app


async def procrastinate_main(args: argparse.Namespace) -> dict[str, Any]:
    app = procrastinate_app(args.url, args.stamps)
    async with app.open_async():
        if args.mode == "install":
            await app.schema_manager.apply_schema_async()
            return {"ok": True}
        if args.mode == "enqueue":
            task = app.tasks[args.task]
            start = time.perf_counter()
            for i in range(0, args.n, CHUNK):
                await task.batch_defer_async(*[{} for _ in range(min(CHUNK, args.n - i))])
            return {"seconds": time.perf_counter() - start}
        options: dict[str, Any] = {
            "concurrency": args.concurrency,
            "install_signal_handlers": False,
            "listen_notify": True,
        }
        if args.mode == "drain":
            return await _capped(app.run_worker_async(wait=False, **options), args.cap)
        if args.mode == "worker":
            return await _until_sigterm(app.run_worker_async(wait=True, **options))
    raise SystemExit(f"unknown mode {args.mode}")


def procrastinate_probe(args: argparse.Namespace) -> dict[str, Any]:
    """One committed enqueue per sample through Procrastinate's own defer function (the SQL
    its ``defer`` runs), timing just before COMMIT."""
    import psycopg

    sql = (
        "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'probe', 0, NULL, NULL, "
        "%s::jsonb, NULL)::procrastinate_job_to_defer_v1])"
    )
    commits: dict[int, float] = {}
    with psycopg.connect(args.url) as conn:
        for sample in range(args.samples):
            conn.execute(sql, (json.dumps({"sample": sample}),))
            commits[sample] = time.time()
            conn.commit()
            if not wait_for_stamp(args.stamps, sample):
                return {"commits": commits, "error": f"sample {sample} never ran"}
            time.sleep(args.gap)
    return {"commits": commits}


# -- PgQueuer -------------------------------------------------------------------------------


async def pgqueuer_driver(url: str) -> tuple[Any, Any]:
    """asyncpg when installed (what PgQueuer's own benchmark uses), else psycopg."""
    try:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver

        conn = await asyncpg.connect(url)
        return AsyncpgDriver(conn), conn
    except ImportError:
        import psycopg
        from pgqueuer.db import PsycopgDriver

        aconn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        return PsycopgDriver(aconn), aconn


async def pgqueuer_main(args: argparse.Namespace) -> dict[str, Any]:
    from pgqueuer.models import Job
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    driver, conn = await pgqueuer_driver(args.url)
    try:
        queries = Queries(driver)
        if args.mode == "install":
            await queries.install()
            return {"ok": True}
        if args.mode == "enqueue":
            start = time.perf_counter()
            for i in range(0, args.n, CHUNK):
                k = min(CHUNK, args.n - i)
                await queries.enqueue([args.task] * k, [None] * k, [0] * k)
            return {"seconds": time.perf_counter() - start}
        if args.mode == "probe":
            return await pgqueuer_probe(args, driver, conn, queries)
        qm = QueueManager(queries)

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            Tally.hit()

        @qm.entrypoint("io")
        async def io(job: Job) -> None:
            await Tally.io()

        @qm.entrypoint("probe")
        async def probe(job: Job) -> None:
            assert args.stamps is not None and job.payload is not None
            append_stamp(args.stamps, int(job.payload))

        if args.mode == "drain":
            run = qm.run(batch_size=args.batch_size, mode=QueueExecutionMode.drain)
            return await _capped(run, args.cap, stop=qm.shutdown.set)
        if args.mode == "worker":
            return await _until_sigterm(qm.run(batch_size=args.batch_size), stop=qm.shutdown.set)
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    raise SystemExit(f"unknown mode {args.mode}")


async def pgqueuer_probe(
    args: argparse.Namespace, driver: Any, conn: Any, queries: Any
) -> dict[str, Any]:
    """PgQueuer's enqueue inside an explicit transaction, timing just before COMMIT."""
    commits: dict[int, float] = {}
    loop = asyncio.get_running_loop()
    for sample in range(args.samples):
        await driver.execute("BEGIN")
        await queries.enqueue("probe", str(sample).encode())
        commits[sample] = time.time()
        await driver.execute("COMMIT")
        ok = await loop.run_in_executor(None, wait_for_stamp, args.stamps, sample)
        if not ok:
            return {"commits": commits, "error": f"sample {sample} never ran"}
        await asyncio.sleep(args.gap)
    return {"commits": commits}


# -- helpers --------------------------------------------------------------------------------


async def _capped(run: Any, cap: float, stop: Any = None) -> dict[str, Any]:
    """Run a worker until it exits by itself or ``cap`` seconds passed (then stop it)."""
    start = time.time()
    task = asyncio.ensure_future(run)
    done, _ = await asyncio.wait([task], timeout=cap)
    capped = not done
    if capped:
        if stop is not None:
            stop()
            done, _ = await asyncio.wait([task], timeout=10)
        if not done:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    else:
        task.result()
    return Tally.as_dict() | {"capped": capped, "wall": time.time() - start}


async def _until_sigterm(run: Any, stop: Any = None) -> dict[str, Any]:
    task = asyncio.ensure_future(run)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    waiter = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        if stop is not None:
            stop()
            await asyncio.wait([task], timeout=5)
        if not task.done():
            task.cancel()
    with contextlib.suppress(BaseException):
        await task
    waiter.cancel()
    return {"ok": True}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    p.add_argument("system", choices=["procrastinate", "pgqueuer"])
    p.add_argument("mode", choices=["install", "enqueue", "drain", "worker", "probe"])
    p.add_argument("--url", required=True, help="postgresql://... (libpq form)")
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--task", choices=["noop", "io"], default="noop", help="what enqueue adds")
    p.add_argument("--cap", type=float, default=60.0)
    p.add_argument("--concurrency", type=int, default=10, help="Procrastinate worker concurrency")
    p.add_argument("--batch-size", type=int, default=100, help="PgQueuer batch size")
    p.add_argument("--stamps", help="file the probe task appends to")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--gap", type=float, default=0.02, help="seconds between probes")
    args = p.parse_args(argv)
    if args.system == "procrastinate" and args.mode == "probe":
        out = procrastinate_probe(args)
    elif args.system == "procrastinate":
        out = asyncio.run(procrastinate_main(args))
    else:
        out = asyncio.run(pgqueuer_main(args))
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
