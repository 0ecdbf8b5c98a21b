"""Job states and attempt outcomes: the names the database stores.

Who moves a job out of each state:
- ``requested``: a worker claims it (-> running), or someone cancels it (-> cancelled).
- ``running``: the worker that holds its lease records the attempt's outcome; a live worker
  rescues it as ``lost`` when the holder's heartbeat expires; a cancel request stops it.
- ``succeeded``, ``failed``, ``cancelled``: final. Only an explicit retry (a person or the
  dashboard) moves ``failed``/``cancelled`` back to ``requested``; pruning deletes them.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    REQUESTED = "requested"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
)
#: States in which a unique key is held: one such job per (job name, unique key).
ACTIVE_STATES: tuple[JobState, ...] = (JobState.REQUESTED, JobState.RUNNING)


class Outcome(StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    CANCELLED = "cancelled"
    DEFERRED = "deferred"


def _unknown(cls: type[JobState] | type[Outcome]) -> JobState | Outcome:
    """A member outside the enumeration: not iterated, not parsed from text, not in the
    database's CHECK constraints; it stands for a value in a row this code does not know."""
    member = str.__new__(cls, "unknown")
    member._name_ = "UNKNOWN"
    member._value_ = "unknown"
    return member


#: A job row's state this code does not know (a newer version's, or a tampered row): shown as
#: ``unknown``, offered no action, never written.
UNKNOWN_STATE: JobState = _unknown(JobState)  # type: ignore[assignment]
#: An attempt row's outcome this code does not know.
UNKNOWN_OUTCOME: Outcome = _unknown(Outcome)  # type: ignore[assignment]
