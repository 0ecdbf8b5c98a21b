"""The worker: claim -> hand to the child processes -> ask the core -> persist.

Decide, then act: the core (``corequeue.core.lifecycle``) decides each job's next state from
the child's report; this loop only moves data between the store and the pool. The database
calls run in two lanes (:mod:`corequeue.worker.lanes`); maintenance (heartbeat, rescue of lost
jobs, pruning, schedules) runs as services with ``run_once(now)``
(:mod:`corequeue.worker.services`).
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
from collections.abc import Sequence
from datetime import datetime
from types import FrameType
from typing import Any

from sqlalchemy.engine import URL

from corequeue import hooks
from corequeue.config import Settings
from corequeue.core.errors import CorequeueError, DatabaseUnavailable
from corequeue.executor.child import ChildConfig
from corequeue.executor.pool import Event, Ready, Released
from corequeue.executor.task import Task, TaskResult
from corequeue.store.queries import Store
from corequeue.store.records import AttemptEnd, ClaimedJob, WorkerRecord
from corequeue.worker.cancels import LeaseCheck
from corequeue.worker.counters import Counters
from corequeue.worker.endings import decide
from corequeue.worker.joblog import log_claimed, log_ends, log_stats, log_stopped
from corequeue.worker.lanes import ClaimLane, NextReady, RecordLane
from corequeue.worker.notifier import Notifier, WakeUp
from corequeue.worker.outage import Outage
from corequeue.worker.pids import ChildPool
from corequeue.worker.process import Clock, check_heartbeat, flush_logs, utcnow
from corequeue.worker.services import Heartbeat, Pruner, Rescuer, Service

log = logging.getLogger("corequeue.worker")


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
        """``listen_url``: where to LISTEN for notifications (default: the store's database)."""
        check_heartbeat(settings)
        self.store = store
        self.listen_url = listen_url
        self.settings = settings
        self.burst = burst
        self.clock = clock
        self.id = str(uuid.uuid4())
        self.queues = list(settings.queues)  # as written, with their shares (NAME=K)
        self.pool = ChildPool(
            ChildConfig.of(settings),
            max_processes=settings.max_processes,
            max_jobs_per_process=settings.max_jobs_per_process,
            max_pending_per_process=settings.max_pending_per_process,
            caps=settings.shares,
        )
        self.wake = WakeUp()
        self.notifier: Notifier | None = None
        self.counters = Counters()
        self.started_at = clock()
        self.outage = Outage()
        # Claims and the recording of endings run off the loop's thread on PostgreSQL, each in
        # a lane of its own: children get their next batch while the last one is recorded.
        self._claims = ClaimLane.of(store, settings, self.id, self.pool)
        self._records = RecordLane(store)
        # Held: claimed jobs, endings decided and being recorded, unstarted jobs to give back.
        self.claimed: dict[int, ClaimedJob] = {}
        self._ends: list[AttemptEnd] = []
        self._recording: list[AttemptEnd] = []
        self._releases: list[ClaimedJob] = []
        self._drained = False  # the last claim found nothing ready (burst mode exits on it)
        self._closing = False
        self._stopping = False
        self._stop_now = False
        self._stop_deadline: float | None = None
        self._services: list[Service] = [Heartbeat(self), Rescuer(self), Pruner(self), *services]
        self._next_run: dict[str, float] = {}
        self._next_ready: datetime | None = None
        self._look = True  # whether a claim may find something: see _loop
        self._next_poll = 0.0  # monotonic time of the next polling claim
        self._next_stats = time.monotonic() + settings.stats_every
        self._leases = LeaseCheck(store)  # running jobs cancelled (or rescued elsewhere)?

    # -- what the services see (services.ServiceHost) ---------------------------------------

    def held(self) -> set[tuple[int, str]]:
        """(job id, lease) of every job this worker holds: claimed, running, or ended and not
        recorded yet."""
        held = {(j.id, j.lease) for j in self.claimed.values()}
        held |= {(e.job_id, e.lease) for e in (*self._ends, *self._recording)}
        held |= {(j.id, j.lease) for j in self._releases}
        return held

    def status(self) -> WorkerRecord:
        """This worker's heartbeat row as of now."""
        stats = self.counters.as_dict()
        stats.update(
            running=self.pool.running,
            degraded=bool(self.notifier and self.notifier.degraded),
            children_replaced=self.pool.replaced,
        )
        return WorkerRecord(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            started_at=self.started_at,
            last_beat_at=self.clock(),
            stats=stats,
        )

    def database_answered(self) -> None:
        """A call to the database succeeded: an outage, if any, is over."""
        self.outage.recovered()

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
        # The first beat before the children (they start once the fork server has imported
        # the application; the loop turns meanwhile).
        self.store.worker_beat(self.status())
        self.pool.start(stop=lambda: self._stopping or self._stop_now)
        if self.store.is_postgresql:
            self.notifier = Notifier(self.listen_url or self.store.url, self.wake)
            self.notifier.start()
        code = 0
        try:
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
            if self._stopping or self._stop_now or self.outage.ongoing:
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
                code = self._wind_down()
                if code is not None:
                    return code
            elif not self.outage.ongoing or time.monotonic() >= self.outage.retry_at:
                # During an outage a claim doubles as the probe that notices the database is
                # back (with nothing to flush, nothing else would), at a capped backoff.
                if self._ends and not self._records.busy:
                    self._start_record()
                self._claim_if_due(now)
                if self.burst and self._burst_done():
                    log.info("burst: nothing ready, exiting")
                    return 0
            timeout = self._wait_time(now)
            flush_logs()
            events = self.pool.wait(
                timeout,
                extra=[self.wake, self._claims.done, self._records.done, self._leases.done],
            )
            self.counters.woke()
            if self.wake.clear():
                self._look = True  # enqueue notification (or a stop request)
                if not events and not self.pool.running and not self.outage.ongoing:
                    # An idle worker woken by an enqueue: its pick-up latency is this
                    # claim, so it goes first; the loop's other checks follow it.
                    self._claim_if_due(self.clock())
            self._handle(events)

    def _wind_down(self) -> int | None:
        """A turn of a graceful stop: no more claims. Returns the exit code once the running
        jobs have ended (or were stopped at the end of the grace period), else None."""
        self._next_ready = None  # no more claims: only children and deadlines wake us
        self.pool.stop_accepting()
        if not self.pool.running and not self._ends and not self._releases:
            return 0
        assert self._stop_deadline is not None
        if time.monotonic() >= self._stop_deadline:
            log.warning("grace period over: stopping %d running job(s)", self.pool.running)
            self._handle(self.pool.kill_all("the worker's grace period ran out"), interrupted=True)
            self._flush()
            return 0
        return None

    def _burst_done(self) -> bool:
        """Whether a burst worker is done: nothing was ready, nothing is under way."""
        return (
            self._drained
            and not self._claims.busy
            and not self._records.busy
            and not self.outage.ongoing  # "nothing ready" only if the claim ran
            and not self.pool.running
            and not self._ends
            and not self._releases
        )

    def _claim_if_due(self, now: datetime) -> None:
        """Claim for the free slots if it is time to look for jobs (not while stopping)."""
        if self._stopping or self._stop_now:
            return
        mono = time.monotonic()
        due = not self._claims.busy and (
            self._look
            or mono >= self._next_poll
            or (self._next_ready is not None and now >= self._next_ready)
            or self.outage.ongoing
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
        if not self._stopping and not self.outage.ongoing:
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
        if self.outage.ongoing:
            candidates.append(self.outage.retry_at - mono)
        return min(max(min(candidates), 0.0), 60.0)

    def _claim_size(self) -> int:
        """How many jobs to claim now: every free slot (at most the pool's ``claim_most``),
        but only once its ``claim_batch`` is free or a child has nothing queued, so claims
        (and commits) come in batches while every child still has work. Nothing while twice
        as many endings as there are slots wait to be recorded (one batch being recorded while
        the next one runs): a database slower to record than the children are to run must not
        let the endings (and the parent's memory) pile up, nor jobs stay ``running`` long
        after (see executor.sizing)."""
        free = self._claims.claimable(self.pool.free_slots())
        sizing = self.pool.sizing
        if len(self._ends) + len(self._recording) >= max(2 * sizing.capacity, 1):
            return 0
        if free >= sizing.claim_batch or self.pool.has_idle_child():
            return min(free, sizing.claim_most)
        return 0

    # -- the lanes --------------------------------------------------------------------------

    def _start_claim(self, limit: int, now: datetime) -> None:
        """Claim up to ``limit`` jobs in the claim lane; :meth:`_take_claim` hands them over."""
        self._drained = False
        # Nothing running: the loop has nothing to do meanwhile (an idle worker picking up a
        # job), so the claim runs here, without the hand-offs to and from the thread.
        if self._claims.claim(limit, now, inline=not self.pool.running):
            self._take_claim()

    def _start_lookup(self) -> None:
        """Look up when the next waiting job becomes ready, in the claim lane (after a claim
        that found fewer jobs than it asked for, once those are handed over)."""
        if self._claims.look_up(inline=not self.pool.running):
            self._take_claim()

    def _take_claim(self, timeout: float | None = 0.0) -> None:
        """Apply the claim lane's outcome if it is in (waiting up to ``timeout``): hand the
        claimed jobs to the children, or note when the next job becomes ready."""
        try:
            outcome = self._claims.take(timeout)
        except DatabaseUnavailable as exc:
            self._outage(exc)
            return
        if outcome is None:
            return
        if isinstance(outcome, NextReady):
            self._next_ready = outcome.when
            return
        claimed = outcome.jobs
        self.outage.recovered()
        stopping = self._stopping or self._closing
        if claimed:
            if stopping:
                self._releases.extend(claimed)  # claimed as the worker began to stop
            else:
                self._submit(claimed)
        if outcome.more:
            self._look = True  # more may be ready
        else:
            self._drained = not claimed
            if not stopping:
                self._start_lookup()

    def _start_record(self) -> None:
        """Record the buffered endings in the record lane (compare-and-set on each lease)."""
        ends, self._ends = self._ends, []
        self._recording = ends
        if self._records.record(ends):
            self._take_record()

    def _take_record(self, timeout: float | None = 0.0) -> None:
        """Apply the record lane's outcome if it is in (waiting up to ``timeout``)."""
        try:
            applied = self._records.take(timeout)
        except DatabaseUnavailable as exc:  # nothing was recorded: keep the endings
            ends, self._recording = self._recording, []
            self._ends = ends + self._ends
            self._outage(exc)
            return
        except BaseException:
            self._recording = []
            raise
        if applied is None:
            return
        ends, self._recording = self._recording, []
        self.outage.recovered()
        self._log_ends(ends, applied)
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
            tasks.append(Task.of(job, self.id))
        log_claimed(claimed)
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
        if events or self.pool.sizing.grew():
            self._look = True  # slots freed up (or a child became ready, or had more room)
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
            end = decide(
                job,
                event,
                now,
                self.id,
                interrupted=interrupted,
                max_deferrals=self.settings.max_deferrals,
                unknown_job_timeout=self.settings.unknown_job_timeout,
                max_worker_losses=self.settings.max_worker_losses,
            )
            if event.recorded:  # the job's own transaction recorded it: count and log it only
                self._log_ends([end], {end.job_id})
            else:
                self._ends.append(end)

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
        self.outage.recovered()

    def _flush_releases(self) -> None:
        try:
            self._release()
        except DatabaseUnavailable as exc:
            self._outage(exc)

    def _release(self) -> None:
        releases, self._releases = self.pool.releasable(self._releases)
        if not releases:
            return
        try:
            self.store.job_release_many(releases, now=self.clock())
        except DatabaseUnavailable:
            self._releases = releases + self._releases
            raise
        self.counters.released += len(releases)
        self._drained = False  # they are waiting again: a burst worker must not exit now
        log.info("released %d unstarted job(s) back to the queue", len(releases))

    def _log_ends(self, ends: Sequence[AttemptEnd], applied: set[int]) -> None:
        log_ends(self.counters, ends, applied)
        hooks.fire_endings(ends, applied)

    def _outage(self, exc: CorequeueError) -> None:
        self._next_ready = None  # claims wait for the database: retry on the outage's pace
        self.outage.failed(exc)

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

    def _check_cancelled(self) -> None:
        """Stop the children of running jobs that no longer run under their lease (cancelled,
        rescued elsewhere, deleted). The store recorded how they ended: the worker records
        nothing for them, it logs them (``joblog.log_stopped``). The check runs off the
        loop's thread on PostgreSQL (:mod:`corequeue.worker.cancels`)."""

        def running() -> list[tuple[int, str]]:
            return [(t.job_id, t.lease) for t in self.pool.tasks()]

        self._leases.start_if_due(running)
        try:
            gone = self._leases.take(running)
        except DatabaseUnavailable as exc:
            self._outage(exc)
            return
        if not gone:
            return
        events = self.pool.cancel(set(gone))
        kept: list[Event] = []
        for event in events:
            if isinstance(event, TaskResult) and event.job_id in gone:
                job = self.claimed.pop(event.job_id, None)
                if job is not None and job.lease == event.lease:
                    log_stopped(self.counters, job.id, job.name, gone[job.id])
            else:
                kept.append(event)
        if events:
            self._look = True  # slots freed up
        self._handle(kept)

    def _log_stats(self) -> None:
        degraded = bool(self.notifier and self.notifier.degraded)
        log_stats(self.counters, running=self.pool.running, degraded=degraded)

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
        self._leases.close()
        with contextlib.suppress(CorequeueError):
            self.store.worker_delete(self.id)
        self.wake.close()
        log.info("worker %s stopped: %s", self.id, json.dumps(self.counters.as_dict()))
