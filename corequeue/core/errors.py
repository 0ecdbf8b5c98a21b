"""The exceptions corequeue raises.

Every error derives from :class:`CorequeueError`; each subclass's docstring is its default
message, and each says what to do next. Pure: imports nothing but the standard library.
"""

from __future__ import annotations


class CorequeueError(Exception):
    """A corequeue error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(CorequeueError):
    """The configuration is invalid: check [tool.corequeue], COREQUEUE_* variables and flags."""


class JobParamsError(CorequeueError):
    """A job parameter cannot be stored: use JSON types, datetime, date, time, UUID, Decimal."""


class UnknownJobError(CorequeueError):
    """No job is registered under this name: import the module that defines it (--import)."""


class InvalidTransition(CorequeueError):
    """This job cannot move from its current state by this event."""


class StaleLease(InvalidTransition):
    """The result comes from an attempt that no longer holds the job's lease; it was refused."""


class UniqueViolation(CorequeueError):
    """Another job holds this unique key (it is waiting or running, or within its period)."""


class DuplicateJob(UniqueViolation):
    """A job with this unique key already holds it (on_conflict="raise"): nothing was enqueued;
    ``job_id`` is the holder's id."""

    def __init__(self, message: str | None = None, *, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class SchemaError(CorequeueError):
    """The corequeue tables are missing or outdated: run `corequeue migrate`."""


class DatabaseUnavailable(CorequeueError):
    """The database cannot be reached: check the URL and that the server is running."""


class JobNotFound(CorequeueError):
    """No job has this id: it was deleted or pruned, or the enqueue that made it rolled back."""


class JobTimeout(CorequeueError):
    """Waiting for the job's result took longer than the timeout given."""


class JobFailed(CorequeueError):
    """The job ended without a result (failed or cancelled)."""
