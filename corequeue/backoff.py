"""How long a failed attempt waits before the next one: the one place that decides it.

The job's own ``retry_delay(attempt)`` when there is a job to ask (an instance, or a class this
process knows by the job's name), else the default exponential backoff of
:mod:`corequeue.core.retry`. The child asks it for an attempt that raised; the worker for an
attempt the child could not report on (lost, timed out, cancelled) and the rescue of lost jobs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from corequeue import registry
from corequeue.core.retry import exponential_backoff

if TYPE_CHECKING:
    from corequeue.jobs import Job


def max_worker_losses_for(name: str, default: int) -> int:
    """The crash-loop bound of the job named ``name``: its class's ``max_worker_losses``
    when this process knows the class, else ``default`` (the setting). Never raises."""
    try:
        value = registry.resolve(name).max_worker_losses
    except Exception:
        return default
    return default if value is None else int(value)


def retry_delay_for(
    job: Job | str | None, attempt: int, *, jitter: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based) of ``job``: a Job instance,
    a job name (its class's ``retry_delay`` is called without building the job), or None (no
    job known). Falls back to ``exponential_backoff(attempt, jitter())`` when the name is not
    registered here or the job's ``retry_delay`` raises. Never raises."""
    try:
        if isinstance(job, str):
            cls = registry.resolve(job)
            job = object.__new__(cls)
        if job is not None:
            return float(job.retry_delay(attempt))
    except Exception:
        pass
    return exponential_backoff(max(attempt, 1), jitter())
