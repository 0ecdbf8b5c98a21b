"""corequeue: background jobs kept in your SQL database.

PostgreSQL in production (many workers on many machines), SQLite embedded by default.

The public names load on first use (PEP 562): ``import corequeue`` alone imports neither
SQLAlchemy nor the database driver, so a worker's children and short commands start fast.
``from corequeue import Job`` imports what ``Job`` needs, no more.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what mypy and IDEs see; at run time, __getattr__ below
    from corequeue.context import JobContext, current_job
    from corequeue.core.errors import (
        ConfigError,
        CorequeueError,
        DatabaseUnavailable,
        DuplicateJob,
        InvalidTransition,
        JobFailed,
        JobNotFound,
        JobParamsError,
        JobTimeout,
        SchemaError,
        StaleLease,
        UniqueViolation,
        UnknownJobError,
    )
    from corequeue.core.states import JobState, Outcome
    from corequeue.flow import pause_queue, resume_queue
    from corequeue.functions import JobFunction, job
    from corequeue.hooks import JobEvent, on
    from corequeue.jobs import DeferJob, Job, JobHandle, enqueue_many, register_job
    from corequeue.runtime import configure, get_store
    from corequeue.scheduler import schedule

#: Where each public name lives (the module is imported on the name's first use).
_ERRORS = "corequeue.core.errors"
_HOMES = {
    "ConfigError": _ERRORS,
    "CorequeueError": _ERRORS,
    "DatabaseUnavailable": _ERRORS,
    "DeferJob": "corequeue.jobs",
    "DuplicateJob": _ERRORS,
    "InvalidTransition": _ERRORS,
    "Job": "corequeue.jobs",
    "JobContext": "corequeue.context",
    "JobEvent": "corequeue.hooks",
    "JobFailed": _ERRORS,
    "JobFunction": "corequeue.functions",
    "JobHandle": "corequeue.jobs",
    "JobNotFound": _ERRORS,
    "JobParamsError": _ERRORS,
    "JobState": "corequeue.core.states",
    "JobTimeout": _ERRORS,
    "Outcome": "corequeue.core.states",
    "SchemaError": _ERRORS,
    "StaleLease": _ERRORS,
    "UniqueViolation": _ERRORS,
    "UnknownJobError": _ERRORS,
    "configure": "corequeue.runtime",
    "current_job": "corequeue.context",
    "enqueue_many": "corequeue.jobs",
    "get_store": "corequeue.runtime",
    "job": "corequeue.functions",
    "on": "corequeue.hooks",
    "pause_queue": "corequeue.flow",
    "register_job": "corequeue.jobs",
    "resume_queue": "corequeue.flow",
    "schedule": "corequeue.scheduler",
}

__all__ = [
    "ConfigError",
    "CorequeueError",
    "DatabaseUnavailable",
    "DeferJob",
    "DuplicateJob",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobFunction",
    "JobHandle",
    "JobNotFound",
    "JobParamsError",
    "JobState",
    "JobTimeout",
    "Outcome",
    "SchemaError",
    "StaleLease",
    "UniqueViolation",
    "UnknownJobError",
    "configure",
    "current_job",
    "enqueue_many",
    "get_store",
    "job",
    "on",
    "pause_queue",
    "register_job",
    "resume_queue",
    "schedule",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'corequeue' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next use is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
