"""The jobs the benchmarks run: a no-op, a probe that stamps when ``run()`` starts, and
I/O-bound jobs (async and sync) for the ``io`` scenario.

Imported by corequeue workers with ``--import benchmarks.jobs``.
"""

from __future__ import annotations

import asyncio
import os
import time

from corequeue import Job, register_job

#: File the latency probe appends "sample_id start_time" lines to (set by the harness).
STAMP_ENV = "COREQUEUE_BENCH_STAMPS"


@register_job(alias="bench-noop")
class Noop(Job):
    """Does nothing: the benchmarks measure the queue, not the job."""

    def run(self) -> None:
        return None


@register_job(alias="bench-probe")
class Probe(Job):
    """Records ``time.time()`` at the start of ``run()`` for the pick-up latency scenario."""

    def __init__(self, sample: int) -> None:
        self.sample = sample

    def run(self) -> None:
        started = time.time()
        append_stamp(self.sample, started)


def append_stamp(sample: int, started: float) -> None:
    """Append one "sample started" line to the stamp file (one small write: atomic)."""
    path = os.environ[STAMP_ENV]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{sample} {started:.6f}\n".encode())
    finally:
        os.close(fd)


@register_job(alias="bench-io-async")
class IoAsync(Job):
    """An I/O-bound async job: awaits ``seconds`` (an HTTP call, say)."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    async def run(self) -> None:
        await asyncio.sleep(self.seconds)


@register_job(alias="bench-io-sync")
class IoSync(Job):
    """An I/O-bound sync job: sleeps ``seconds`` in its thread (requests, boto3, say)."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    def run(self) -> None:
        time.sleep(self.seconds)
