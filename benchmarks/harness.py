"""Plumbing for the benchmarks: scratch databases, subprocesses, memory sampling, statistics."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Context:
    """What every scenario needs: the server, the interpreters, the knobs of this run."""

    admin_url: str  # libpq URL of a database to run CREATE/DROP DATABASE from
    python: str = sys.executable  # runs corequeue
    peer_python: str = sys.executable  # runs the peers (may be another venv)
    reps: int = 3
    cap: float = 120.0  # seconds a drain may run before it is stopped and counted
    quick: bool = False
    workdir: Path = field(default_factory=lambda: Path("/tmp"))
    verbose: bool = True
    peers: tuple[str, ...] = ("pgqueuer", "procrastinate")
    procrastinate_concurrency: int = 10
    pgqueuer_batch: int = 100

    def say(self, message: str) -> None:
        if self.verbose:
            print(f"  .. {message}", file=sys.stderr, flush=True)


def libpq(url: str) -> str:
    """The libpq form (postgresql://) of a SQLAlchemy URL."""
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def sqlalchemy_url(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def database_url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(ctx: Context, label: str) -> Iterator[str]:
    """A fresh database on the benchmark server, dropped afterwards. Yields its libpq URL.

    A CHECKPOINT first (when the role may run one): the dirty pages and WAL that the last run
    left behind are written out now, not by a checkpoint that lands in the middle of the next
    system's run (a 100k drain writes a few hundred MB of WAL)."""
    name = f"cqbench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(ctx.admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
    try:
        yield libpq(database_url(ctx.admin_url, name))
    finally:
        with psycopg.connect(libpq(ctx.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check_local(url: str) -> None:
    """Load goes to this machine only."""
    host = make_url(url).host or "localhost"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"benchmarks send load to 127.0.0.1 only, not {host!r}")


def env_with_path(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


def run_json(cmd: Sequence[str], *, timeout: float = 900.0) -> dict[str, Any]:
    """Run a helper that prints a JSON object on its last line; return that object."""
    import json

    proc = subprocess.run(
        list(cmd), cwd=ROOT, env=env_with_path(), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Sampler:
    """A thread that samples process ``pid`` every ``interval`` seconds while the ``with``
    block runs (``_run`` is the sampling loop; it stops once ``_stop`` is set)."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class MemorySampler(Sampler):
    """Samples VmRSS and VmHWM of one process from /proc every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(pid, interval)
        self.hwm_kb = 0
        self.rss_kb: list[int] = []

    def _run(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self._stop.is_set():
            try:
                text = Path(path).read_text()
            except (FileNotFoundError, ProcessLookupError):
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.hwm_kb = max(self.hwm_kb, int(line.split()[1]))
                elif line.startswith("VmRSS:"):
                    self.rss_kb.append(int(line.split()[1]))
            self._stop.wait(self.interval)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def wait_for_stamp(path: Path, sample: int, timeout: float = 10.0) -> bool:
    needle = f"\n{sample} ".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if needle in b"\n" + path.read_bytes():
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    return False


def read_stamps(path: Path) -> dict[int, float]:
    stamps: dict[int, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            sample, at = line.split()
            stamps.setdefault(int(sample), float(at))
    return stamps
