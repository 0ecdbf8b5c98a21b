"""The worker's check for running jobs that no longer run under their lease (cancelled,
rescued elsewhere, deleted), every :data:`CANCEL_CHECK_EVERY` seconds.

On PostgreSQL the check runs in a thread of its own (:mod:`corequeue.worker.offload`): a check
over hundreds of running jobs takes tens of milliseconds, during which the loop goes on reading
results, claiming and handing jobs over. Its answer is applied only to the jobs still running
under the lease it checked (one that ended meanwhile, or was claimed again under a new lease,
is left alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from corequeue.core.states import JobState
from corequeue.store.queries import Store
from corequeue.worker.notifier import WakeUp
from corequeue.worker.offload import Offload

#: Seconds between two checks for running jobs that were cancelled (or rescued elsewhere).
CANCEL_CHECK_EVERY = 0.5

Running = Callable[[], Iterable[tuple[int, str]]]  # (job id, lease) of the jobs running now


class LeaseCheck:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._offload = Offload(threaded=store.is_postgresql, name="corequeue-leases")
        self._asked: dict[int, str] = {}
        self._last = 0.0  # monotonic time of the last check started

    @property
    def done(self) -> WakeUp:
        """Readable once a check has finished."""
        return self._offload.done

    def start_if_due(self, running: Running) -> None:
        """Start a check of the ``running`` jobs' leases, if one is due and none runs."""
        mono = time.monotonic()
        if self._offload.busy or mono - self._last < CANCEL_CHECK_EVERY:
            return
        self._last = mono
        asked = dict(running())
        if asked:
            self._asked, store = asked, self.store
            self._offload.start(lambda: store.job_leases_gone_many(list(asked.items())))

    def take(self, running: Running) -> dict[int, JobState | None] | None:
        """The jobs the finished check found gone (job id -> its state now, None: deleted),
        of those still ``running`` under the lease checked; None while it runs (or none was
        started). Raises the check's exception (DatabaseUnavailable during an outage)."""
        outcome = self._offload.take()
        if outcome is None:
            return None
        gone, exc = outcome
        if exc is not None:
            raise exc
        if not gone:
            return {}
        now = dict(running())
        asked = self._asked
        return {i: state for i, state in gone.items() if i in now and now[i] == asked.get(i)}

    def close(self) -> None:
        self._offload.close()
