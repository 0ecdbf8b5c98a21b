"""``corequeue_worker``: a real worker, with real child processes, that a test drains.

``drain()`` runs :class:`corequeue.worker.Worker` in burst mode in the test's process until
nothing is ready. With ``with_scheduled=True`` it also pulls jobs waiting for a later time
(delayed jobs, retries after their backoff, deferred jobs) forward to now, so it runs until
nothing waits at all. Jobs that failed during the drain raise an AssertionError listing each
job with its error, unless ``raise_on_failure=False``.

``drain(until=...)`` travels in time, without waiting for the clock: from now to ``until`` (an
aware datetime, or a timedelta from now) it stops at each moment something falls due (a
waiting job's run time, a schedule's next occurrence: :func:`corequeue.core.delays.next_stop`),
fires the schedules due then and runs a burst worker whose clock reads that moment. A job
sees ``current_job().run_at`` as scheduled; one that fails is retried at its backoff from
that moment, if that is before ``until``. Limits: the clock is the worker's (claims, endings,
retries, schedules); a job enqueued by a job counts its ``delay=`` from the real clock, and
the children's own clock (``datetime.now()`` in a job) is not moved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from corequeue import registry, runtime, scheduler
from corequeue.config import Settings
from corequeue.core import cron, delays
from corequeue.core.params import decode_params
from corequeue.core.states import JobState
from corequeue.store.queries import Store
from corequeue.store.records import JobFilter, JobRecord
from corequeue.testing.inline import until_moment
from corequeue.worker import Clock, Service, Worker, utcnow


@dataclass(frozen=True)
class DrainResult:
    """What a drain did: jobs that finished during it, and jobs still waiting after it."""

    succeeded: list[JobRecord]
    failed: list[JobRecord]
    cancelled: list[JobRecord]
    waiting: list[JobRecord]  # requested jobs left (scheduled later, unless with_scheduled)

    @property
    def ran(self) -> int:
        return len(self.succeeded) + len(self.failed) + len(self.cancelled)


class PullForward:
    """A worker service that makes every waiting job ready now (``with_scheduled``)."""

    name = "corequeue-testing-pull-forward"
    interval = 0.05
    needs_settled = True  # endings under way are recorded first: their retries are pulled too

    def __init__(self, store: Store, queues: Sequence[str]) -> None:
        self.store = store
        self.queues = list(queues)

    def run_once(self, now: datetime) -> bool:
        """Pull waiting jobs forward to ``now``; returns whether any moved."""
        return bool(self.store.job_make_due_many(queues=self.queues, now=now))


class TestWorker:
    """Drains the jobs of a test database with a real worker (see the module docstring).

    ``settings`` is the Settings each drain's worker uses; change it with
    ``dataclasses.replace`` (for instance ``queues=("mail",)``). ``env``: environment
    variables set while it drains, so the worker's child processes inherit them (the
    application's database URL, from ``corequeue_app_setup``).
    """

    __test__ = False  # not a test class, despite its name

    def __init__(
        self, store: Store, settings: Settings, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.env = dict(env or {})

    def drain(
        self,
        *,
        until: datetime | timedelta | None = None,
        with_scheduled: bool = False,
        raise_on_failure: bool = True,
        timeout: float = 60.0,
        queues: Sequence[str] | None = None,
    ) -> DrainResult:
        """Run the worker until nothing is ready (nothing waits at all, ``with_scheduled``).

        With ``until``, travel in time up to then (see the module docstring): everything due
        by then runs, schedules' occurrences included.

        Returns a DrainResult. Raises AssertionError listing the jobs that failed during the
        drain (unless ``raise_on_failure`` is False), and when the drain has not finished
        after ``timeout`` seconds (a job that keeps deferring itself, say).
        """
        __tracebackhide__ = True
        settings = self.settings
        if queues is not None:
            settings = dataclasses.replace(settings, queues=tuple(queues))
        if until is not None and with_scheduled:
            raise ValueError("drain(until=...) runs what is due by then: drop with_scheduled")
        finished_before = self._finished_ids()
        deadline = time.monotonic() + timeout
        with _environment(self.env):
            if until is not None:
                timed_out = self._travel(settings, until_moment(until), deadline)
            else:
                timed_out = self._drain_now(settings, deadline, with_scheduled)
        result = self._result(finished_before)
        how = f"until={until!r}" if until is not None else f"with_scheduled={with_scheduled}"
        problem = self._problem(result, timed_out, timeout, how)
        if problem is not None and (timed_out or raise_on_failure):
            raise AssertionError(problem)
        return result

    def _travel(self, settings: Settings, until: datetime, deadline: float) -> bool:
        """Stop at each moment something falls due up to ``until``. Returns whether the
        deadline stopped it."""
        schedules = scheduler.Scheduler(self.store, scheduler.load_definitions(settings))
        now = datetime.now(UTC)
        while True:
            schedules.run_once(now)
            if self._run_once(settings, deadline, [], clock=_frozen(now)):
                return True
            if now >= until:
                return False
            waiting = [r.run_at for r in self._all((JobState.REQUESTED,), settings.queue_names)]
            occurrences = [cron.next_occurrence(d.cron, now) for d in schedules.definitions]
            now = delays.next_stop(now, until, [*waiting, *occurrences])

    def _drain_now(self, settings: Settings, deadline: float, with_scheduled: bool) -> bool:
        timed_out = False
        while True:
            pull = PullForward(self.store, settings.queue_names)
            timed_out = self._run_once(settings, deadline, [pull] if with_scheduled else [])
            if timed_out or not with_scheduled:
                break
            # The burst worker stops when nothing is ready; jobs sent back to wait for a later
            # time (retries, deferrals) in its last moments are pulled forward for another run.
            if not self._all((JobState.REQUESTED,), settings.queue_names):
                break
            pull.run_once(datetime.now(UTC))
        return timed_out

    def _problem(
        self, result: DrainResult, timed_out: bool, timeout: float, how: str
    ) -> str | None:
        """What the drain raises: jobs left at the deadline, or the jobs that failed."""
        if timed_out:
            return (
                f"corequeue_worker.drain() did not finish within {timeout:g}s ({how}). "
                "Still waiting:\n" + _listing(result.waiting or self._running())
            )
        if result.failed:
            return f"corequeue_worker.drain(): {len(result.failed)} job(s) failed:\n" + "\n".join(
                self._failure(r) for r in result.failed
            )
        return None

    def _run_once(
        self,
        settings: Settings,
        deadline: float,
        services: list[Service],
        clock: Clock | None = None,
    ) -> bool:
        """One burst run of a real worker. Returns whether it was stopped at the deadline."""
        worker = Worker(self.store, settings, burst=True, services=services, clock=clock or utcnow)
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            worker.request_stop()  # graceful: stop claiming
            worker.request_stop()  # at once: stop running jobs

        timer = threading.Timer(max(deadline - time.monotonic(), 0.0), stop)
        timer.daemon = True
        timer.start()
        try:
            worker.run(install_signals=False)
        finally:
            timer.cancel()
        return timed_out.is_set()

    # -- reading the outcome ----------------------------------------------------------------

    def _all(self, states: tuple[JobState, ...], queues: Sequence[str] = ()) -> list[JobRecord]:
        out: list[JobRecord] = []
        before: int | None = None
        while True:
            query = JobFilter(states=states, queues=tuple(queues))
            page = self.store.job_list(query, limit=500, before_id=before)
            out += page
            if len(page) < 500:
                break
            before = page[-1].id
        out.sort(key=lambda r: r.id)
        return out

    def _finished_ids(self) -> set[int]:
        final = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
        return {r.id for r in self._all(final)}

    def _running(self) -> list[JobRecord]:
        return self._all((JobState.RUNNING,))

    def _result(self, finished_before: set[int]) -> DrainResult:
        by_state: dict[JobState, list[JobRecord]] = {s: [] for s in JobState}
        for record in self._all(tuple(JobState)):
            if record.state.is_final and record.id in finished_before:
                continue
            by_state[record.state].append(record)
        return DrainResult(
            succeeded=by_state[JobState.SUCCEEDED],
            failed=by_state[JobState.FAILED],
            cancelled=by_state[JobState.CANCELLED],
            waiting=by_state[JobState.REQUESTED],
        )

    def _failure(self, record: JobRecord) -> str:
        lines = [f"  {_describe(record)} failed after {record.attempts} attempt(s): {record.error}"]
        attempts = self.store.attempt_list(record.id)
        last = attempts[-1] if attempts else None
        if last is not None and last.traceback:
            tail = last.traceback.rstrip().splitlines()[-6:]
            lines += [f"      {line}" for line in tail]
        return "\n".join(lines)


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _frozen(moment: datetime) -> Clock:
    return lambda: moment


def _describe(record: JobRecord) -> str:
    try:
        args, kwargs = decode_params(record.params, codecs=runtime.codecs())
        parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        call = f"{record.name}({', '.join(parts)})"
    except Exception:
        call = f"{record.name}({record.params})"
    return f"job {record.id} {call} queue={record.queue!r}"


def _listing(records: Sequence[JobRecord]) -> str:
    if not records:
        return "  nothing"
    now = datetime.now(UTC)
    return "\n".join(
        f"  {_describe(r)} state={r.state.value} run_at={r.run_at.isoformat()}"
        + (" (in the future)" if r.run_at > now else "")
        for r in records
    )


def test_settings(store: Store, base: Settings | None = None, **changes: Any) -> Settings:
    """Settings for a test worker on ``store``: one child process (jobs run one at a time, in
    order), quick polling, a short grace period. ``changes`` override any of them."""
    from corequeue.config import load_settings

    settings = base if base is not None else load_settings()
    # The worker imports a job's module only when it lies under its imports: the test has
    # imported its jobs already, so their modules are the ones the worker may import too.
    known = sorted({cls.__module__ for cls in registry.registered().values()} - {"__main__"})
    defaults: dict[str, Any] = {
        "imports": tuple(dict.fromkeys([*settings.imports, *known])),
        "database_url": store.url.render_as_string(hide_password=False),
        "max_processes": 1,
        "poll_interval": 0.2,
        "grace_period": 5.0,
        "stats_every": 3600.0,
    }
    defaults.update(changes)
    return dataclasses.replace(settings, **defaults)


test_settings.__test__ = False  # type: ignore[attr-defined]
