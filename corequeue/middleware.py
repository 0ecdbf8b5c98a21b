"""Job middleware: a chain of callables around ``Job.run()``.

A middleware is a factory (a class or a function) configured by dotted path. It receives the
next callable in the chain and returns a callable that takes the job and returns its result::

    class LogContext:
        def __init__(self, run_job):
            self.run_job = run_job

        def __call__(self, job):
            with log_context(job=type(job).__name__):
                return self.run_job(job)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from corequeue.core.errors import ConfigError
from corequeue.jobs import Job
from corequeue.runtime import resolve_setting_path

RunJob = Callable[[Job], Any]


def _run(job: Job) -> Any:
    return job.run()


def build_chain(paths: Sequence[str]) -> RunJob:
    """The callable that runs a job through the middleware ``paths`` (outermost first).

    Raises ConfigError when a path cannot be imported or is not callable.
    """
    handler: RunJob = _run
    for path in reversed(paths):
        factory = resolve_setting_path(path)
        if not callable(factory):
            raise ConfigError(f"middleware {path!r} is not callable")
        handler = factory(handler)
        if not callable(handler):
            raise ConfigError(f"middleware {path!r} did not return a callable")
    return handler
