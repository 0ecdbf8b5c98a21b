"""Real worker processes for tests: ``corequeue run`` started with ``sys.executable -m corequeue``.

A :class:`WorkerProcess` writes its log (stdout and stderr) to a file, can be waited on with a
deadline, and is stopped with SIGTERM, then SIGKILL. The ``workers`` fixture hands out
factories and kills whatever is still running when the test ends, pass or fail.

Workers run in the test's temporary directory (so no pyproject.toml is picked up by accident),
with the repository root on PYTHONPATH so ``--import tests.jobs`` works.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from testing.faults import ROOT, clean_env, run_cli, wait_for

__all__ = ["ROOT", "WorkerFactory", "WorkerProcess", "clean_env", "run_cli", "wait_for", "workers"]


class WorkerProcess:
    """One ``corequeue run`` process."""

    def __init__(
        self,
        database_url: str,
        *args: str,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        imports: Sequence[str] = ("tests.jobs",),
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

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: children are killed with it
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() the worker first"
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def returncode(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def wait_exit(self, timeout: float = 120.0) -> int:
        """Wait for the worker to exit on its own (``--burst``); returns its exit code."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker did not exit within {timeout:g}s; its log:\n{self.log()[-4000:]}"
            ) from None

    def wait_log(self, text: str, *, timeout: float = 60.0) -> None:
        """Wait until the worker's log contains ``text``."""

        def seen() -> bool:
            if text in self.log():
                return True
            if self.returncode is not None:
                raise AssertionError(
                    f"worker exited ({self.returncode}) before logging {text!r}:\n{self.log()}"
                )
            return False

        wait_for(seen, timeout=timeout, what=f"{text!r} in the worker's log")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL (of its whole process group) after ``timeout`` seconds.
        Returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait()

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    """A factory of started ``corequeue run`` processes: ``workers(url, "--burst", ...)``.

    Every worker is killed (with its children) when the test ends. Logs are in
    ``tmp_path/worker-N.log``.
    """
    started: list[WorkerProcess] = []

    def start(
        database_url: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        imports: Sequence[str] = ("tests.jobs",),
    ) -> WorkerProcess:
        worker = WorkerProcess(
            database_url,
            *args,
            log_path=tmp_path / f"worker-{len(started) + 1}.log",
            cwd=tmp_path,
            env=env,
            imports=imports,
        )
        started.append(worker)
        return worker.start()

    try:
        yield start
    finally:
        for worker in started:
            if worker.process is not None and worker.process.poll() is None:
                worker.kill()
            elif worker.process is not None:
                # The worker is gone; make sure no orphaned child of its group survives.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(worker.process.pid, signal.SIGKILL)
