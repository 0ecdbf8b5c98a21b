"""Fault injection for real ``corequeue run`` processes.

- :class:`WorkerProcess`: a ``python -m corequeue run`` subprocess (cwd = the repository root,
  log in a file) that can be SIGKILLed, SIGTERMed and waited on; :func:`children` finds its
  child processes through /proc, :meth:`WorkerProcess.kill_child` kills one mid-job. (Not
  :class:`corequeue.worker.Worker`, the loop inside such a process.)
- :class:`TcpProxy`: a loopback TCP proxy in front of PostgreSQL. Point a worker's URL at it,
  then :meth:`TcpProxy.cut` drops every connection and refuses new ones until
  :meth:`TcpProxy.restore`: a database outage that leaves the shared server alone.
- :func:`postgres_stop` / :func:`postgres_start`: restart the real local server (for opt-in
  tests only: other tests share it).
- :func:`wait_for`: poll a condition with a deadline (tests never sleep a fixed time).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 60.0,
    what: str = "it",
    detail: Callable[[], str] | None = None,
) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); AssertionError naming
    ``what`` (and ``detail()``, e.g. the workers' logs) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            more = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{more}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a corequeue subprocess: no inherited COREQUEUE_* settings, the
    repository importable, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    args: Sequence[str],
    *,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """``python -m corequeue ARGS`` to completion (cwd: the repository root by default)."""
    return subprocess.run(
        [sys.executable, "-m", "corequeue", *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s live child processes (from /proc)."""
    found: list[int] = []
    proc = Path("/proc")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class WorkerProcess:
    """One ``corequeue run`` process."""

    def __init__(
        self,
        database_url: str,
        *args: str,
        log_path: Path,
        imports: Sequence[str] = ("testing.reliability_jobs",),
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "corequeue",
            "run",
            "--database-url",
            database_url,
            *(a for module in imports for a in ("--import", module)),
            *args,
        ]
        self.log_path = log_path
        self.cwd = cwd
        self.env = clean_env(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: cleanup can kill it whole
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() the worker first"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def children(self) -> list[int]:
        """The worker's job-running children: its fork server's children (not
        multiprocessing's resource tracker, nor the fork server itself)."""
        out = []
        for pid in children(self.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"forkserver" in cmdline:
                out.extend(children(pid))
            elif b"resource_tracker" not in cmdline:
                out.append(pid)
        return out

    def wait_children(self, count: int, *, timeout: float = 30.0) -> list[int]:
        """Wait until the worker has ``count`` live child processes; returns their pids."""
        return list(
            wait_for(
                lambda: (c := self.children()) and len(c) >= count and c,
                timeout=timeout,
                what=f"{count} child process(es) of worker {self.pid}",
            )
        )

    def kill_child(self, pid: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one of this worker's children."""
        assert pid in self.children(), f"{pid} is not a child of worker {self.pid}"
        os.kill(pid, sig)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the worker process alone (as the OOM killer would): its children must go
        with it by themselves."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.pid} did not exit within {timeout:g}s; log:\n{self.log()[-4000:]}"
            ) from None

    def wait_log(self, text: str, *, timeout: float = 60.0) -> None:
        def seen() -> bool:
            if text in self.log():
                return True
            if self.returncode is not None:
                raise AssertionError(
                    f"worker exited ({self.returncode}) before logging {text!r}:\n{self.log()}"
                )
            return False

        wait_for(seen, timeout=timeout, what=f"{text!r} in the log of worker {self.pid}")

    def cleanup(self) -> None:
        """Kill the worker's whole process group, whatever state it is in."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; can cut every connection and refuse new
    ones (:meth:`cut`) until :meth:`restore`. Use :meth:`url` to point a database URL at it."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        parsed = make_url(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 5432)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parsed = make_url(url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sockets) // 2

    def cut(self) -> None:
        """Drop every connection and refuse new ones (connection refused)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._listener is None:
            self.start()

    def close(self) -> None:
        self.cut()
        for thread in self._threads:
            thread.join(5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.accepted += 1
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                for sock in (source, sink):
                    if sock in self._sockets:
                        self._sockets.discard(sock)
                        sock.close()


def _cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1], "main"


def postgres_stop() -> None:
    """Stop the local PostgreSQL cluster (fast shutdown: sessions are disconnected)."""
    version, name = _cluster()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop", "-m", "fast"],
        check=True,
        capture_output=True,
    )


def postgres_start() -> None:
    version, name = _cluster()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
        check=True,
        capture_output=True,
    )
