"""corequeue: background jobs kept in your SQL database.

PostgreSQL in production (many workers on many machines), SQLite embedded by default.
"""

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
