"""Unique keys: at most one waiting or running job per (job name, unique key).

Enqueuing a job whose key is held returns the holder instead. The holder may finish between
the refused insert and the look-up of who holds the key; the store then tries the insert again,
up to :data:`UNIQUE_INSERT_TRIES` times, and gives up with :func:`contention`.
"""

from __future__ import annotations

from corequeue.core.errors import InvalidTransition
from corequeue.core.states import ACTIVE_STATES, JobState

#: The states in which a job holds its unique key.
HOLDING_STATES: tuple[JobState, ...] = ACTIVE_STATES

#: How many times an insert whose key's holder keeps changing is tried before giving up.
UNIQUE_INSERT_TRIES = 10


def contention(unique_key: str) -> InvalidTransition:
    """The error when the tries ran out (the key's holders kept finishing and starting)."""
    return InvalidTransition(f"could not enqueue unique job {unique_key!r}: contention")
