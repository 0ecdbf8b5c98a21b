"""corequeue: background jobs kept in your SQL database.

PostgreSQL in production (many workers on many machines), SQLite embedded by default.
"""

from corequeue.core.errors import (
    ConfigError,
    CorequeueError,
    DatabaseUnavailable,
    InvalidTransition,
    JobFailed,
    JobParamsError,
    JobTimeout,
    SchemaError,
    StaleLease,
    UniqueViolation,
    UnknownJobError,
)
from corequeue.core.states import JobState, Outcome
from corequeue.flow import pause_queue, resume_queue
from corequeue.jobs import DeferJob, Job, JobHandle, enqueue_many, register_job
from corequeue.runtime import configure, get_store
from corequeue.scheduler import schedule

__all__ = [
    "ConfigError",
    "CorequeueError",
    "DatabaseUnavailable",
    "DeferJob",
    "InvalidTransition",
    "Job",
    "JobFailed",
    "JobHandle",
    "JobParamsError",
    "JobState",
    "JobTimeout",
    "Outcome",
    "SchemaError",
    "StaleLease",
    "UniqueViolation",
    "UnknownJobError",
    "configure",
    "enqueue_many",
    "get_store",
    "pause_queue",
    "register_job",
    "resume_queue",
    "schedule",
]
__version__ = "0.1.0"
