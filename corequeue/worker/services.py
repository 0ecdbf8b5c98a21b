"""Periodic maintenance that runs in a worker's loop: its heartbeat (with the check for jobs it
no longer holds), the rescue of other workers' lost jobs, and pruning.

A service sees its worker through :class:`ServiceHost` only: the store, the settings, the
worker's id, the jobs it holds, its heartbeat row, and "the database answered".
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Protocol

from corequeue import hooks
from corequeue.backoff import max_worker_losses_for, retry_delay_for
from corequeue.config import Settings
from corequeue.store.queries import Store
from corequeue.store.records import WorkerRecord

log = logging.getLogger("corequeue.worker")


class Service(Protocol):
    """Periodic maintenance; tests call ``run_once(now)`` directly."""

    name: str
    interval: float
    #: Whether a round must see this worker's own work as persisted: the loop first waits
    #: for its claim and recording under way (tens of milliseconds in a busy drain, with the
    #: children idle meanwhile), so only a service that reads this worker's jobs says so.
    needs_settled: bool

    def run_once(self, now: datetime) -> bool | None:
        """One round; returns True when it may have made jobs ready to claim."""
        ...


class ServiceHost(Protocol):
    """What a maintenance service may ask of the worker it runs in."""

    @property
    def id(self) -> str: ...

    @property
    def store(self) -> Store: ...

    @property
    def settings(self) -> Settings: ...

    def held(self) -> set[tuple[int, str]]:
        """(job id, lease) of every job this worker holds: claimed, running, or ended and
        not recorded yet."""
        ...

    def status(self) -> WorkerRecord:
        """This worker's heartbeat row as of now."""
        ...

    def database_answered(self) -> None:
        """A call to the database succeeded: an outage, if any, is over."""
        ...


class Heartbeat:
    """Writes the worker's heartbeat row, and records as lost the jobs the database says this
    worker runs but that it does not hold (a result committed without waiting for the flush,
    forgotten by a database crash), so they are retried instead of staying ``running``."""

    name = "heartbeat"
    #: Its orphan check compares the jobs the database says this worker runs with the ones it
    #: holds: a claim under way would make its jobs look orphaned.
    needs_settled = True

    def __init__(self, worker: ServiceHost) -> None:
        self.worker = worker
        self.interval = worker.settings.heartbeat_interval

    def run_once(self, now: datetime) -> bool:
        worker = self.worker
        worker.store.worker_beat(worker.status())
        worker.database_answered()  # a beat written proves the database is back
        rescued = worker.store.job_orphan_rescue_many(
            worker_id=worker.id, held=worker.held(), now=now, retry_delay=retry_delay_for
        )
        for end in rescued:
            log.warning(
                "job_id=%d attempt=%d was recorded as running here but this worker no longer "
                "held it: lost, now %s",
                end.job_id,
                end.attempt,
                end.change.state.value,
            )
        hooks.fire_endings(rescued)
        return bool(rescued)


class Rescuer:
    """Records the running jobs of workers whose heartbeat expired as ``lost``."""

    name = "rescuer"
    needs_settled = False  # other workers' jobs

    def __init__(self, worker: ServiceHost) -> None:
        self.worker = worker
        self.interval = worker.settings.heartbeat_interval

    def run_once(self, now: datetime) -> bool:
        ends = self.worker.store.job_rescue_many(
            now=now,
            heartbeat_timeout=self.worker.settings.heartbeat_timeout,
            retry_delay=retry_delay_for,
            rescuer=self.worker.id,  # its own jobs: the heartbeat's orphan check
            max_worker_losses=functools.partial(
                max_worker_losses_for, default=self.worker.settings.max_worker_losses
            ),
        )
        for end in ends:
            log.warning(
                "rescued job_id=%d attempt=%d from worker %s: lost, now %s",
                end.job_id,
                end.attempt,
                end.worker_id,
                end.change.state.value,
            )
        hooks.fire_endings(ends)
        return bool(ends)


class Pruner:
    """Deletes finished jobs older than the retention period."""

    name = "pruner"
    interval = 600.0
    needs_settled = False  # finished jobs only

    def __init__(self, worker: ServiceHost) -> None:
        self.worker = worker

    def run_once(self, now: datetime) -> None:
        retention = self.worker.settings.retention
        if retention <= 0:
            return
        deleted = self.worker.store.job_prune_many(
            finished_before=now - timedelta(seconds=retention)
        )
        if deleted:
            log.info("pruned %d finished job(s) older than %ss", deleted, f"{retention:g}")
