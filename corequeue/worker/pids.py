"""The worker's pool of children: which child reported each job's ending (for the worker's
per-job log line), and which unstarted jobs may go back to the queue.

:class:`ChildPool` notes the pid as a child's reports are read; :func:`pid_of` hands it to the
ending the worker builds from that report (``endings.decide``), once. A process runs one
worker; a note nobody asks for (a report the worker drops: its lease moved on) is forgotten
once :data:`MAX_NOTES` pile up.
"""

from __future__ import annotations

from typing import Any

from corequeue.core import limits
from corequeue.executor.pool import Event, ProcessPool
from corequeue.executor.task import TaskResult
from corequeue.store.records import ClaimedJob

MAX_NOTES = 100_000
_ended_in: dict[int, int] = {}  # job id -> pid of the child that reported its ending


class ChildPool(ProcessPool):
    """The pool, noting the pid of the child each ending came from."""

    @property
    def chain_depth(self) -> int:
        """How many jobs a chain under a concurrency limit may take per claim: the queue a
        child keeps (``sizing.max_pending``), once job durations are known; one before (a
        chain of slow jobs would hold its slot, and delay what is queued behind it, longer)."""
        return self.sizing.max_pending if self.sizing.mean_duration is not None else 1

    def releasable(self, jobs: list[ClaimedJob]) -> tuple[list[ClaimedJob], list[ClaimedJob]]:
        """Claimed jobs that never started, split into those that may go back to the queue
        now and those that must wait: a job of a chain (flow control, ``gates``) waits while a
        task sharing a gate still runs here, as its chain's slots are free once the chain's
        last job no longer runs (:mod:`corequeue.core.limits`)."""
        if not any(job.gates for job in jobs):
            return jobs, []
        busy = {gate for task in self.tasks() for gate in task.gates}
        now = [job for job in jobs if limits.may_give_back(job.gates, busy)]
        return now, [job for job in jobs if not limits.may_give_back(job.gates, busy)]

    def _read(self, child: Any) -> list[Event]:
        events = super()._read(child)
        pid = child.pid
        if events and pid is not None:
            if len(_ended_in) >= MAX_NOTES:
                _ended_in.clear()
            for event in events:
                if type(event) is TaskResult:
                    _ended_in[event.job_id] = pid
        return events


def pid_of(job_id: int) -> int | None:
    """The pid of the child that reported ``job_id``'s ending (None when no child did: lost,
    timed out, killed). Asked once, as the worker decides that ending."""
    return _ended_in.pop(job_id, None)
