"""The worker: claim -> hand to the child processes -> ask the core -> persist.

Decide, then act: the core (``corequeue.core.lifecycle``) decides each job's next state from
the child's report; this loop only moves data between the store and the pool. Maintenance
(heartbeat, rescue of lost jobs, pruning, schedules) runs as services with ``run_once(now)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Protocol

from sqlalchemy.engine import URL

from corequeue import logs, registry
from corequeue.config import Settings
from corequeue.core import lifecycle
from corequeue.core.errors import CorequeueError, DatabaseUnavailable
from corequeue.core.retry import exponential_backoff
from corequeue.core.states import Outcome
from corequeue.executor.child import ChildConfig
from corequeue.executor.pool import Event, ProcessPool, Ready, Released
from corequeue.executor.task import Task, TaskResult
from corequeue.notifier import Notifier, WakeUp
from corequeue.offload import Offload
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd, ClaimedJob, WorkerRecord

log = logging.getLogger("corequeue.worker")

Clock = Callable[[], datetime]

#: While the database is unreachable, claims are retried after 0.5 s, doubling up to 5 s; the
#: outage is logged once every 10 s, however often it is retried.
OUTAGE_BACKOFF_MIN = 0.5
OUTAGE_BACKOFF_MAX = 5.0
OUTAGE_LOG_EVERY = 10.0
#: ``Worker._claim_limit`` of a claim-lane call that looks up the next run_at (not a claim).
LOOKUP = -1


def worker_store(settings: Settings) -> Store:
    """The store a worker runs on: its own engine, with the worker's connection settings
    (see ``store.engine.create_engine(worker=True)``)."""
    return Store.from_url(
        settings.database_url, worker=True, synchronous_commit=settings.synchronous_commit
    )


#: The line logged for each finished job (its arguments: see Worker._log_ends).
_FINISHED = "finished job_id=%d name=%s queue=%s attempt=%d outcome=%s state=%s duration_ms=%.1f%s"


#: The worker process's first-generation garbage collection threshold (Python's default: 700).
GC_THRESHOLD = 10_000


def tune_gc() -> None:
    """Garbage collection for the worker's own process, once its start-up is done (imports,
    settings, engine): what exists then stays, so it is frozen out of later collections, and
    a collection starts after 10,000 new objects instead of 700. A busy worker keeps a few
    thousand jobs in flight (claimed, running, ending), and each job's objects outlive a
    700-object generation: a 60,000-job drain ran ~320 young and 3 full collections, the full
    ones ~25 ms each with the children's results waiting. Freed objects are still freed at
    once (reference counting); only cycles wait longer."""
    import gc

    gc.collect()
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *older)


def flush_logs() -> None:
    """Flush the root logger's handlers (the CLI's are block-buffered: see
    ``logs.configure_logging``); the loop calls it before each wait."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def utcnow() -> datetime:
    return datetime.now(UTC)


def retry_delay_for(name: str, attempt: int) -> float:
    """Backoff for an attempt the child could not report on (lost, timed out): the job
    class's ``retry_delay`` when this process knows the class, else the default."""
    import random

    try:
        cls = registry.resolve(name)
        return float(cls.retry_delay(object.__new__(cls), attempt))
    except Exception:
        return exponential_backoff(max(attempt, 1), random.random())


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


@dataclass
class Counters:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0  # attempts that errored, timed out or were lost
    retried: int = 0
    deferred: int = 0
    cancelled: int = 0
    released: int = 0
    refused: int = 0  # results refused because the lease had moved on
    wakeups: int = 0  # times the loop waited and woke up (stays low when idle)
    since: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "since"}


class Worker:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        burst: bool = False,
        clock: Clock = utcnow,
        services: Sequence[Service] = (),
        listen_url: URL | None = None,
    ) -> None:
        """``listen_url``: where to LISTEN for enqueue notifications (PostgreSQL; default the
        store's database)."""
        if settings.heartbeat_timeout <= 2 * settings.heartbeat_interval:
            # A warning, not an error: a lone worker (tests) may space its beats out freely.
            log.warning(
                "heartbeat_timeout (%gs) should be more than twice heartbeat_interval (%gs): "
                "other workers may rescue this worker's jobs as lost while it is alive",
                settings.heartbeat_timeout,
                settings.heartbeat_interval,
            )
        self.store = store
        self.listen_url = listen_url
        self.settings = settings
        self.burst = burst
        self.clock = clock
        self.id = str(uuid.uuid4())
        self.queues = list(settings.queues)
        self.pool = ProcessPool(
            ChildConfig(settings.imports, settings.middleware, settings.database_url),
            max_processes=settings.max_processes,
            max_jobs_per_process=settings.max_jobs_per_process,
            max_pending_per_process=settings.max_pending_per_process,
        )
        self.wake = WakeUp()
        self.notifier: Notifier | None = None
        # Claims and the recording of endings run off the loop's thread on PostgreSQL, each in
        # a lane of its own: children get their next batch while the last one is recorded.
        self._claims = Offload(threaded=store.is_postgresql, name="corequeue-claim")
        self._records = Offload(threaded=store.is_postgresql, name="corequeue-record")
        self._claim_limit = 0  # how many jobs the running claim asks for (LOOKUP: a look-up)
        self._recording: list[AttemptEnd] = []  # the endings being recorded
        self._drained = False  # the last claim found nothing ready (burst mode exits on it)
        self._closing = False
        self.counters = Counters()
        self.started_at = clock()
        self.claimed: dict[int, ClaimedJob] = {}
        self._ends: list[AttemptEnd] = []
        self._releases: list[ClaimedJob] = []
        self._stopping = False
        self._stop_now = False
        self._stop_deadline: float | None = None
        self._outage_since: float | None = None
        self._outage_logged = 0.0
        self._outage_retry_at = 0.0  # during an outage, claims are retried from then on
        self._outage_backoff = OUTAGE_BACKOFF_MIN
        self._services: list[Service] = [
            Heartbeat(self),
            Rescuer(self),
            Pruner(self),
            *services,
        ]
        self._next_run: dict[str, float] = {}
        self._next_ready: datetime | None = None
        self._look = True  # whether a claim may find something: see _loop
        self._next_poll = 0.0  # monotonic time of the next polling claim
        self._next_stats = time.monotonic() + settings.stats_every

    # -- signals ----------------------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        """First call: stop claiming and finish gracefully. Second call: stop at once."""
        if self._stopping:
            log.warning("second stop signal: stopping at once")
            self._stop_now = True
        else:
            log.info(
                "stopping: no new jobs; running jobs get %.0fs to finish",
                self.settings.grace_period,
            )
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.settings.grace_period
        self.wake.set()

    def _install_signals(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, install_signals: bool = True) -> int:
        """Run until stopped (or, in burst mode, until nothing is ready). Returns the exit code.

        Raises SchemaError when the tables are missing or outdated.
        """
        self.store.check_schema()
        if install_signals:
            self._install_signals()
        log.info(
            "worker %s starting: database=%s queues=%s processes=%d",
            self.id,
            self.store.url.render_as_string(hide_password=True),
            ",".join(self.queues) or "*",
            self.settings.max_processes,
        )
        self.pool.start()
        if self.store.is_postgresql:
            self.notifier = Notifier(self.listen_url or self.store.url, self.wake)
            self.notifier.start()
        code = 0
        try:
            self._beat()
            code = self._loop()
        finally:
            self._shutdown()
        return code

    def _loop(self) -> int:
        while True:
            if not (self._stopping or self._stop_now):
                self.pool.start()  # replaces children that died (after their restart delay)
            events = self.pool.collect()
            events += self.pool.check_timeouts()
            self._handle(events)
            self._take_claim()
            self._take_record()
            if self._stopping or self._stop_now or self._outage_since is not None:
                self._settle()
                self._flush()
            elif self._releases:
                self._flush_releases()
            now = self.clock()
            self._maintain(now)
            if self._stop_now:
                self._settle()
                self._handle(self.pool.kill_all("the worker was stopped at once"), interrupted=True)
                self._flush()
                return 1
            if self._stopping:
                self._next_ready = None  # no more claims: only children and deadlines wake us
                self.pool.stop_accepting()
                if not self.pool.running and not self._ends and not self._releases:
                    return 0
                assert self._stop_deadline is not None
                if time.monotonic() >= self._stop_deadline:
                    log.warning("grace period over: stopping %d running job(s)", self.pool.running)
                    self._handle(
                        self.pool.kill_all("the worker's grace period ran out"), interrupted=True
                    )
                    self._flush()
                    return 0
            elif self._outage_since is None or time.monotonic() >= self._outage_retry_at:
                # During an outage a claim doubles as the probe that notices the database is
                # back (with nothing to flush, nothing else would), at a capped backoff.
                if self._ends and not self._records.busy:
                    self._start_record()
                self._claim_if_due(now)
                if (
                    self.burst
                    and self._drained
                    and not self._claims.busy
                    and not self._records.busy
                    and self._outage_since is None  # "nothing ready" only if the claim ran
                    and not self.pool.running
                    and not self._ends
                    and not self._releases
                ):
                    log.info("burst: nothing ready, exiting")
                    return 0
            timeout = self._wait_time(now)
            flush_logs()
            events = self.pool.wait(
                timeout, extra=[self.wake, self._claims.done, self._records.done]
            )
            self.counters.wakeups += 1
            if self.wake.clear():
                self._look = True  # enqueue notification (or a stop request)
                if not events and not self.pool.running and self._outage_since is None:
                    # An idle worker woken by an enqueue: its pick-up latency is this
                    # claim, so it goes first; the loop's other checks follow it.
                    self._claim_if_due(self.clock())
            self._handle(events)

    def _claim_if_due(self, now: datetime) -> None:
        """Claim for the free slots if it is time to look for jobs (not while stopping)."""
        if self._stopping or self._stop_now:
            return
        mono = time.monotonic()
        due = not self._claims.busy and (
            self._look
            or mono >= self._next_poll
            or (self._next_ready is not None and now >= self._next_ready)
            or self._outage_since is not None
        )
        if not due:
            return
        asked = self._claim_size()
        if not asked:
            # Every slot is busy: a finishing job wakes us; a stale "next ready" time must not
            # (once past, it would make the loop spin until a slot frees up).
            self._next_ready = None
        # Look again on a notification, a finished job, a service that enqueued, the next
        # delayed job's time, the next poll, or a claim that filled up.
        self._look = False
        self._next_poll = mono + self.settings.poll_interval
        if asked:
            self._start_claim(asked, now)

    def _wait_time(self, now: datetime) -> float:
        mono = time.monotonic()
        if self._look and not self._claims.busy and not self._stopping:
            return 0.0  # a claim filled up, or slots freed up meanwhile: claim again now
        candidates = [self.settings.poll_interval]
        if not self._stopping and self._outage_since is None:
            candidates.append(self._next_poll - mono)
        candidates += [t - mono for t in self._next_run.values()]
        if self._next_ready is not None:
            candidates.append((self._next_ready - now).total_seconds())
        deadline = self.pool.next_deadline()
        if deadline is not None:
            candidates.append(deadline)
        respawn = self.pool.next_respawn()
        if respawn is not None and not self._stopping:
            candidates.append(respawn)
        held = self.pool.startup_wait()
        if held is not None:
            candidates.append(held)
        if self._stop_deadline is not None:
            candidates.append(self._stop_deadline - mono)
        if self._outage_since is not None:
            candidates.append(self._outage_retry_at - mono)
        return min(max(min(candidates), 0.0), 60.0)

    def _claim_size(self) -> int:
        """How many jobs to claim now: every free slot, but only once half the slots are free
        or a child has nothing queued, so claims (and commits) come in batches while every
        child still has work. Nothing while twice as many endings as there are slots wait to
        be recorded (one batch being recorded while the next one runs): a database slower to
        record than the children are to run must not let the endings (and the parent's
        memory) pile up, nor jobs stay ``running`` long after."""
        free = self.pool.free_slots()
        capacity = self.settings.max_processes * self.pool.max_pending
        if len(self._ends) + len(self._recording) >= max(2 * capacity, 1):
            return 0
        if free >= max(capacity // 2, 1) or self.pool.has_idle_child():
            return free
        return 0

    def _start_claim(self, limit: int, now: datetime) -> None:
        """Claim up to ``limit`` jobs in the claim lane; :meth:`_take_claim` hands them over."""
        self._claim_limit = limit
        self._drained = False
        store, queues, worker_id = self.store, self.queues, self.id
        lease = uuid.uuid4().hex

        def claim() -> list[ClaimedJob]:
            return store.job_claim_many(
                queues=queues, limit=limit, lease=lease, worker_id=worker_id, now=now
            )

        # Nothing running: the loop has nothing to do meanwhile (an idle worker picking up a
        # job), so the claim runs here, without the hand-offs to and from the thread.
        if self._claims.start(claim, inline=not self.pool.running):
            self._take_claim()

    def _start_lookup(self) -> None:
        """Look up when the next waiting job becomes ready, in the claim lane (after a claim
        that found fewer jobs than it asked for, once those are handed over)."""
        store, queues = self.store, self.queues
        self._claim_limit = LOOKUP
        if self._claims.start(lambda: store.job_next_run_at(queues), inline=not self.pool.running):
            self._take_claim()

    def _take_claim(self, timeout: float | None = 0.0) -> None:
        """Apply the claim lane's outcome if it is in (waiting up to ``timeout``): hand the
        claimed jobs to the children."""
        outcome = self._claims.take(timeout)
        if outcome is None:
            return
        value, exc = outcome
        limit, self._claim_limit = self._claim_limit, 0
        if isinstance(exc, DatabaseUnavailable):
            self._outage(exc)
            return
        if exc is not None:
            raise exc
        if limit == LOOKUP:
            self._next_ready = value
            return
        claimed: list[ClaimedJob] = value
        self._recovered()
        stopping = self._stopping or self._closing
        if claimed:
            if stopping:
                self._releases.extend(claimed)  # claimed as the worker began to stop
            else:
                self._submit(claimed)
        if len(claimed) >= limit:
            self._look = True  # more may be ready
        else:
            self._drained = not claimed
            if not stopping:
                self._start_lookup()

    def _start_record(self) -> None:
        """Record the buffered endings in the record lane (compare-and-set on each lease)."""
        ends, self._ends = self._ends, []
        self._recording = ends
        store = self.store
        # Never inline on PostgreSQL, even with nothing running: the children would wait
        # behind it for their next claim.
        if self._records.start(lambda: store.job_finish_many(ends)):
            self._take_record()

    def _take_record(self, timeout: float | None = 0.0) -> None:
        """Apply the record lane's outcome if it is in (waiting up to ``timeout``)."""
        outcome = self._records.take(timeout)
        if outcome is None:
            return
        value, exc = outcome
        ends, self._recording = self._recording, []
        if isinstance(exc, DatabaseUnavailable):  # nothing was recorded: keep the endings
            self._ends = ends + self._ends
            self._outage(exc)
            return
        if exc is not None:
            raise exc
        self._recovered()
        self._log_ends(ends, set(value))
        self._look = True  # a claim held back by unrecorded endings may go ahead

    def _settle(self) -> None:
        """Wait for the database calls under way, if any, and apply their outcomes."""
        while self._claims.busy or self._records.busy:
            self._take_record(timeout=None)
            self._take_claim(timeout=None)

    def _submit(self, claimed: Sequence[ClaimedJob]) -> None:
        tasks = []
        for job in claimed:
            self.claimed[job.id] = job
            tasks.append(Task(job.id, job.lease, job.name, job.params, job.attempts, job.timeout))
            log.debug(
                "claimed job_id=%d name=%s queue=%s attempt=%d",
                job.id,
                job.name,
                job.queue,
                job.attempts,
            )
        self.counters.claimed += len(claimed)
        left = self.pool.submit(tasks)
        for task in left:  # no child could take them: back to the queue, attempt not counted
            self._releases.append(self.claimed.pop(task.job_id))

    # -- results ----------------------------------------------------------------------------

    def _handle(self, events: Sequence[Event], *, interrupted: bool = False) -> None:
        """Turn the pool's events into endings and releases to persist. ``interrupted``: the
        worker's own shutdown killed these children, so their ``lost`` attempts are requeued
        without being counted (``lifecycle.interrupt``)."""
        now = self.clock()
        if events:
            self._look = True  # slots freed up (or a child became ready)
        for event in events:
            if isinstance(event, Ready):
                log.debug("child process pid=%s ready", event.pid)
                continue
            if isinstance(event, Released):
                for task in event.tasks:
                    job = self.claimed.pop(task.job_id, None)
                    if job is not None:
                        self._releases.append(job)
                continue
            job = self.claimed.pop(event.job_id, None)
            if job is None or job.lease != event.lease:
                continue
            self._ends.append(self._decide(job, event, now, interrupted=interrupted))

    def _decide(
        self, job: ClaimedJob, result: TaskResult, now: datetime, *, interrupted: bool = False
    ) -> AttemptEnd:
        retry_delay = result.retry_delay
        if retry_delay < 0:
            retry_delay = retry_delay_for(job.name, job.attempts)
        error_message = result.error_message
        if interrupted and result.outcome is Outcome.LOST:
            change = lifecycle.interrupt(job.snapshot(), lease=job.lease, now=now)
            error_message = f"{error_message}: requeued without using an attempt"
        else:
            change = lifecycle.finish(
                job.snapshot(),
                result.outcome,
                lease=job.lease,
                now=now,
                retry_delay=retry_delay,
                defer_delay=result.defer_delay,
                defer_counts=result.defer_counts,
            )
        # By position, in AttemptEnd's field order (once per job: keywords cost twice as much).
        return AttemptEnd(
            job.id,
            job.lease,
            job.attempts,  # attempt
            result.outcome,
            change,
            self.id,  # worker_id
            now - timedelta(seconds=result.duration),  # started_at
            now,  # finished_at
            result.result,
            result.error_type,
            error_message,
            result.traceback,
            job.name,
            job.queue,
        )

    def _flush(self) -> None:
        if not self._ends and not self._releases:
            return
        try:
            if self._ends:
                ends, self._ends = self._ends, []
                try:
                    applied = set(self.store.job_finish_many(ends))
                except DatabaseUnavailable:
                    self._ends = ends + self._ends
                    raise
                self._log_ends(ends, applied)
            self._release()
        except DatabaseUnavailable as exc:
            self._outage(exc)
            return
        self._recovered()

    def _flush_releases(self) -> None:
        try:
            self._release()
        except DatabaseUnavailable as exc:
            self._outage(exc)

    def _release(self) -> None:
        if not self._releases:
            return
        releases, self._releases = self._releases, []
        try:
            self.store.job_release_many(releases, now=self.clock())
        except DatabaseUnavailable:
            self._releases = releases + self._releases
            raise
        self.counters.released += len(releases)
        self._drained = False  # they are waiting again: a burst worker must not exit now
        log.info("released %d unstarted job(s) back to the queue", len(releases))

    def _log_ends(self, ends: Sequence[AttemptEnd], applied: set[int]) -> None:
        c = self.counters
        # The INFO lines of jobs that succeeded or deferred go out together, written straight
        # to the command line's handler when it is the only place they would go (about 1 us a
        # line instead of 5: see logs.direct_handler); as records otherwise.
        direct = logs.direct_handler(log, logging.INFO)
        lines: list[str] = []

        def write_lines() -> None:  # before any other line, and at the end
            if direct is not None and lines:
                direct.write_lines(log, logging.INFO, lines)
                lines.clear()

        for end in ends:
            if end.job_id not in applied:
                c.refused += 1
                write_lines()
                log.warning(
                    "refused job_id=%d attempt=%d outcome=%s: the job is no longer running "
                    "under this attempt's lease (cancelled or rescued)",
                    end.job_id,
                    end.attempt,
                    end.outcome.value,
                )
                continue
            job_state = end.change.state.value
            if end.outcome is Outcome.SUCCEEDED:
                c.succeeded += 1
            elif end.outcome is Outcome.DEFERRED:
                c.deferred += 1
            elif end.outcome is Outcome.CANCELLED:
                c.cancelled += 1
            else:
                c.failed += 1
                if end.change.state.value == "requested":
                    c.retried += 1
            quiet = end.outcome in (Outcome.SUCCEEDED, Outcome.DEFERRED)
            level = logging.INFO if quiet else logging.WARNING
            if not log.isEnabledFor(level):
                continue
            duration_ms = (
                (end.finished_at - end.started_at).total_seconds() * 1000 if end.started_at else 0.0
            )
            detail = f" error={end.error_type}: {end.error_message}" if end.error_type else ""
            args = (
                end.job_id,
                end.name,
                end.queue,
                end.attempt,
                end.outcome.value,
                job_state,
                duration_ms,
                detail,
            )
            if quiet and direct is not None:
                lines.append(_FINISHED % args)
                continue
            write_lines()
            # makeRecord + handle: Logger.log would also walk the stack for the caller's file
            # and line, once per job, for a format that does not show them.
            log.handle(
                log.makeRecord(log.name, level, __file__, 0, _FINISHED, args, None, "_log_ends")
            )
        write_lines()

    # -- outages ----------------------------------------------------------------------------

    def _outage(self, exc: CorequeueError) -> None:
        mono = time.monotonic()
        self._next_ready = None  # claims wait for the database: retry on the outage's pace
        if self._outage_since is None:
            self._outage_since = mono
        self._outage_retry_at = mono + self._outage_backoff
        self._outage_backoff = min(self._outage_backoff * 2, OUTAGE_BACKOFF_MAX)
        if mono - self._outage_logged >= OUTAGE_LOG_EVERY:
            self._outage_logged = mono
            log.error("%s; retrying (results are kept until it is back)", exc)

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.info("database reachable again after %.1fs", time.monotonic() - self._outage_since)
            self._outage_since = None
            self._outage_logged = 0.0
        self._outage_backoff = OUTAGE_BACKOFF_MIN

    # -- maintenance ------------------------------------------------------------------------

    def _maintain(self, now: datetime) -> None:
        mono = time.monotonic()
        for service in self._services:
            due = self._next_run.get(service.name, 0.0)
            if mono < due:
                continue
            if service.needs_settled:
                self._settle()
            self._next_run[service.name] = mono + service.interval
            try:
                if service.run_once(now):
                    self._look = True  # it made jobs ready (fired a schedule, rescued jobs)
            except DatabaseUnavailable as exc:
                self._outage(exc)
            except Exception:
                log.exception("maintenance service %s failed; it will run again", service.name)
        self._check_cancelled()
        if mono >= self._next_stats:
            self._next_stats = mono + self.settings.stats_every
            self._log_stats()

    _last_cancel_check = 0.0

    def _check_cancelled(self) -> None:
        """Stop the children of running jobs that were cancelled (or rescued elsewhere)."""
        mono = time.monotonic()
        if mono - self._last_cancel_check < 0.5:
            return
        self._last_cancel_check = mono
        running = [(t.job_id, t.lease) for t in self.pool.tasks()]
        if not running:
            return
        try:
            gone = self.store.job_leases_gone_many(running)
        except DatabaseUnavailable as exc:
            self._outage(exc)
            return
        if gone:
            self._handle(self.pool.cancel(gone))

    def _rescue_orphans(self, now: datetime) -> bool:
        """Jobs the database says this worker runs, but that it does not hold (a result
        committed without waiting for the flush and forgotten by a database crash): record
        them lost, so they are retried instead of staying ``running`` forever."""
        held = {(j.id, j.lease) for j in self.claimed.values()}
        held |= {(e.job_id, e.lease) for e in (*self._ends, *self._recording)}
        held |= {(j.id, j.lease) for j in self._releases}
        rescued = self.store.job_orphan_rescue_many(
            worker_id=self.id, held=held, now=now, retry_delay=retry_delay_for
        )
        for end in rescued:
            log.warning(
                "job_id=%d attempt=%d was recorded as running here but this worker no longer "
                "held it: lost, now %s",
                end.job_id,
                end.attempt,
                end.change.state.value,
            )
        return bool(rescued)

    def _beat(self) -> None:
        stats = self.counters.as_dict()
        stats.update(
            running=self.pool.running,
            degraded=bool(self.notifier and self.notifier.degraded),
            children_replaced=self.pool.replaced,
        )
        self.store.worker_beat(
            WorkerRecord(
                id=self.id,
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues,
                started_at=self.started_at,
                last_beat_at=self.clock(),
                stats=stats,
            )
        )

    def _log_stats(self) -> None:
        c = self.counters
        elapsed = max(time.monotonic() - c.since, 1e-9)
        degraded = " listen=degraded(polling)" if self.notifier and self.notifier.degraded else ""
        log.info(
            "stats claimed=%d succeeded=%d failed=%d retried=%d deferred=%d cancelled=%d "
            "running=%d rate=%.1f/s%s",
            c.claimed,
            c.succeeded,
            c.failed,
            c.retried,
            c.deferred,
            c.cancelled,
            self.pool.running,
            (c.succeeded + c.failed) / elapsed,
            degraded,
        )

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._closing = True
        try:
            self._settle()  # jobs it claimed go back unstarted, its endings are recorded below
        except Exception:
            log.exception("the last database cycle failed")
        # Children still holding tasks (an error ended the loop) finish their running task or
        # are killed; what they report is recorded before anything is called unstarted.
        self._handle(self.pool.close(), interrupted=True)
        # Anything still claimed here never reached a child that could finish it.
        leftover = list(self.claimed.values())
        self.claimed.clear()
        self._releases.extend(leftover)
        for attempt in range(3):
            try:
                self._flush()
                if not self._ends and not self._releases:
                    break
            except CorequeueError:
                pass
            time.sleep(0.2 * (attempt + 1))
        if self._ends or self._releases:
            log.error(
                "could not record %d result(s) before exiting: those jobs will be rescued as "
                "lost after the heartbeat timeout",
                len(self._ends) + len(self._releases),
            )
        if self.notifier is not None:
            self.notifier.stop()
            self.notifier.join(timeout=5)
        self._claims.close()
        self._records.close()
        with contextlib.suppress(CorequeueError):
            self.store.worker_delete(self.id)
        self.wake.close()
        log.info("worker %s stopped: %s", self.id, json.dumps(self.counters.as_dict()))


class Heartbeat:
    name = "heartbeat"
    #: Its orphan check compares the jobs the database says this worker runs with the ones it
    #: holds: a claim under way would make its jobs look orphaned.
    needs_settled = True

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.interval = worker.settings.heartbeat_interval

    def run_once(self, now: datetime) -> bool:
        self.worker._beat()
        self.worker._recovered()  # a beat written proves the database is back
        return self.worker._rescue_orphans(now)


class Rescuer:
    """Records the running jobs of workers whose heartbeat expired as ``lost``."""

    name = "rescuer"
    needs_settled = False  # other workers' jobs

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.interval = worker.settings.heartbeat_interval

    def run_once(self, now: datetime) -> bool:
        ends = self.worker.store.job_rescue_many(
            now=now,
            heartbeat_timeout=self.worker.settings.heartbeat_timeout,
            retry_delay=retry_delay_for,
            rescuer=self.worker.id,  # its own jobs: the heartbeat's orphan check
        )
        for end in ends:
            log.warning(
                "rescued job_id=%d attempt=%d from worker %s: lost, now %s",
                end.job_id,
                end.attempt,
                end.worker_id,
                end.change.state.value,
            )
        return bool(ends)


class Pruner:
    """Deletes finished jobs older than the retention period."""

    name = "pruner"
    interval = 600.0
    needs_settled = False  # finished jobs only

    def __init__(self, worker: Worker) -> None:
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
