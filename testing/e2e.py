"""Real worker processes for tests: ``corequeue run`` started with ``sys.executable -m corequeue``.

A :class:`ScratchWorker` writes its log (stdout and stderr) to a file, can be waited on with a
deadline, and is stopped with SIGTERM, then SIGKILL. The ``workers`` fixture hands out
factories and kills whatever is still running when the test ends, pass or fail.

Workers run in the test's temporary directory (so no pyproject.toml is picked up by accident),
with the repository root on PYTHONPATH so ``--import testing.jobs`` works.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from testing.faults import ROOT, WorkerProcess, clean_env, run_cli, wait_for

__all__ = ["ROOT", "ScratchWorker", "WorkerFactory", "clean_env", "run_cli", "wait_for", "workers"]


class ScratchWorker(WorkerProcess):
    """One ``corequeue run`` process for lifecycle tests: it runs in the test's directory,
    imports ``testing.jobs``, and :meth:`kill` takes its whole process group."""

    def __init__(
        self,
        database_url: str,
        *args: str,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        imports: Sequence[str] = ("testing.jobs",),
    ) -> None:
        super().__init__(database_url, *args, log_path=log_path, imports=imports, env=env, cwd=cwd)

    def wait_exit(self, timeout: float = 120.0) -> int:
        """Wait for the worker to exit on its own (``--burst``); returns its exit code."""
        return super().wait_exit(timeout)

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
        """SIGKILL the worker's whole process group."""
        self.cleanup()


WorkerFactory = Callable[..., ScratchWorker]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    """A factory of started ``corequeue run`` processes: ``workers(url, "--burst", ...)``.

    Every worker is killed (with its children) when the test ends. Logs are in
    ``tmp_path/worker-N.log``.
    """
    started: list[ScratchWorker] = []

    def start(
        database_url: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        imports: Sequence[str] = ("testing.jobs",),
    ) -> ScratchWorker:
        worker = ScratchWorker(
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
