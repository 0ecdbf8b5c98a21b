"""Which waiting jobs a worker claims, and in which order: the rule the store's claim
statement translates into SQL (a test in tests/store holds the two together).

A job is ready when it is waiting, its run time has come, and its queue is one the worker
serves (every queue when the worker names none). Ready jobs are claimed highest priority first,
then earliest run time, then oldest (lowest id). Pure: ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from corequeue.core.states import JobState

#: The claim order as (field, descending) pairs, most significant first.
CLAIM_ORDER: tuple[tuple[str, bool], ...] = (("priority", True), ("run_at", False), ("id", False))

#: The state a job is claimed from.
CLAIMABLE_STATE = JobState.REQUESTED


class Claimable(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def run_at(self) -> datetime: ...


def is_ready(
    state: JobState, run_at: datetime, queue: str, *, now: datetime, queues: Sequence[str]
) -> bool:
    """Whether a job with these fields may be claimed at ``now`` by a worker of ``queues``."""
    return state is CLAIMABLE_STATE and run_at <= now and (not queues or queue in queues)


def claim_key(job: Claimable) -> tuple[int, datetime, int]:
    """Sort key of :data:`CLAIM_ORDER`: claimed jobs sorted by it come in claim order."""
    return (-job.priority, job.run_at, job.id)
