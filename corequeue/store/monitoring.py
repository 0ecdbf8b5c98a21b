"""Read-only queries for monitoring: what the dashboard and ``/metrics`` show.

Every method reads; none writes. They are built with SQLAlchemy Core on the corequeue tables so
they run unchanged on SQLite and PostgreSQL. ``now`` is always an argument, so tests can pin it.
Queries that could grow with history are bounded: time windows walk the partial index on
``finished_at``, samples are limited, and lists take a ``limit``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from corequeue.core.states import JobState, Outcome
from corequeue.store import estimates, schema
from corequeue.store.endings import ON_JOB_ROW, ON_JOB_ROW_STATE
from corequeue.store.engine import translate_errors
from corequeue.store.queries import Store
from corequeue.store.records import JobFilter, WorkerRecord
from corequeue.store.rows import filter_clauses, read_outcome, read_state
from corequeue.store.schedules import ScheduleRow, schedule_list

jobs, attempts = schema.jobs, schema.attempts


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue: jobs by state, how many wait ready or scheduled, and the oldest ready one."""

    queue: str
    counts: dict[JobState, int]
    ready: int = 0  # waiting with run_at <= now
    scheduled: int = 0  # waiting with run_at > now
    oldest_ready_at: datetime | None = None
    #: The succeeded count is the planner's estimate (a large table: store.estimates).
    estimated: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def oldest_wait(self, now: datetime) -> float | None:
        """Seconds the oldest ready job has waited past its run_at (None when none is ready)."""
        if self.oldest_ready_at is None:
            return None
        return max((now - self.oldest_ready_at).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class MinuteBucket:
    """Jobs that reached a final state during one minute (``start`` is the minute, UTC)."""

    start: datetime
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True, slots=True)
class Distribution:
    """Percentiles (seconds) over a sample of values; all None when the sample is empty."""

    count: int
    total: float
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        ordered = sorted(values)
        if not ordered:
            return cls(0, 0.0, None, None, None, None)
        return cls(
            len(ordered),
            math.fsum(ordered),
            _percentile(ordered, 50),
            _percentile(ordered, 90),
            _percentile(ordered, 99),
            ordered[-1],
        )

    @property
    def quantiles(self) -> dict[str, float | None]:
        return {"0.5": self.p50, "0.9": self.p90, "0.99": self.p99}


@dataclass(frozen=True, slots=True)
class Timings:
    """Pick-up latency (started_at - run_at) and duration (finished_at - started_at) over the
    most recently finished jobs of a window."""

    latency: Distribution
    duration: Distribution
    window: timedelta
    sample_limit: int


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Over the most recently finished jobs of a window: the pick-up delay (started_at -
    run_at) by queue and the duration of the last attempt by job name (both from the same
    sample as :class:`Timings`), and the jobs of each name that reached each final state in
    the window (counted in full)."""

    latency_by_queue: dict[str, Distribution]
    duration_by_name: dict[str, Distribution]
    finished_by_name: dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class NameWindow:
    """One job name over one window: jobs finished by final state, and the durations of the
    most recently finished ones."""

    window: timedelta
    finished: dict[str, int]
    duration: Distribution

    @property
    def total(self) -> int:
        return sum(self.finished.values())

    @property
    def failure_rate(self) -> float | None:
        """Failed among succeeded and failed (None when neither)."""
        done = self.finished.get("succeeded", 0) + self.finished.get("failed", 0)
        return self.finished.get("failed", 0) / done if done else None

    @property
    def per_hour(self) -> float:
        return self.total / (self.window.total_seconds() / 3600)


#: The windows of a job name's page.
NAME_WINDOWS = (timedelta(hours=1), timedelta(hours=24), timedelta(days=7))


@dataclass(frozen=True, slots=True)
class JobSummary:
    """What a list of jobs shows of each: no parameters, no result, the error cut short."""

    id: int
    name: str
    queue: str
    state: JobState
    unique_key: str
    unique_until: str
    attempts: int
    max_attempts: int
    run_at: datetime
    finished_at: datetime | None
    error: str | None


#: The longest error a list shows (cut in SQL, so a huge one is never read for a list).
LIST_ERROR_CHARS = 300

_SUMMARY_COLUMNS = (
    jobs.c.id,
    jobs.c.name,
    jobs.c.queue,
    jobs.c.state,
    jobs.c.unique_key,
    jobs.c.unique_until,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.run_at,
    jobs.c.finished_at,
    sa.func.substr(jobs.c.error, 1, LIST_ERROR_CHARS).label("error"),
)


def _summary(row: Any) -> JobSummary:
    return JobSummary(
        id=row.id,
        name=row.name,
        queue=row.queue,
        state=read_state(row.state),
        unique_key=row.unique_key,
        unique_until=row.unique_until,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        run_at=row.run_at,
        finished_at=row.finished_at,
        error=row.error,
    )


@dataclass(frozen=True, slots=True)
class RunningJob:
    id: int
    name: str
    queue: str
    worker_id: str | None
    started_at: datetime | None


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """A worker row, whether its heartbeat is recent, and the jobs it runs."""

    worker: WorkerRecord
    alive: bool
    beat_age: float
    running: list[RunningJob] = field(default_factory=list)


class Monitor:
    """Monitoring reads over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _connect(self) -> Any:
        return self.store.engine.connect()

    # -- queues ---------------------------------------------------------------------------

    def queue_stats(self, *, now: datetime) -> list[QueueStats]:
        """Every queue that has jobs, by name: counts by state, ready and scheduled waiting
        jobs, and the run_at of the oldest ready one."""
        waiting = jobs.c.state == JobState.REQUESTED.value
        ready_q = (
            sa.select(jobs.c.queue, sa.func.count(), sa.func.min(jobs.c.run_at))
            .where(waiting, jobs.c.run_at <= now)
            .group_by(jobs.c.queue)
        )
        scheduled_q = (
            sa.select(jobs.c.queue, sa.func.count())
            .where(waiting, jobs.c.run_at > now)
            .group_by(jobs.c.queue)
        )
        counts: dict[str, dict[JobState, int]] = {}
        with translate_errors(self.store.url), self._connect() as conn:
            found, estimated = estimates.queue_state_counts(conn)
            ready = {q: (int(n), _utc(self.store, at)) for q, n, at in conn.execute(ready_q)}
            scheduled = {q: int(n) for q, n in conn.execute(scheduled_q)}
        for queue, text, n in found:
            row = counts.setdefault(queue, {})
            state = read_state(text)
            row[state] = row.get(state, 0) + n  # (two unknown states add up)
        return [
            QueueStats(
                queue=queue,
                counts=counts[queue],
                ready=ready.get(queue, (0, None))[0],
                scheduled=scheduled.get(queue, 0),
                oldest_ready_at=ready.get(queue, (0, None))[1],
                estimated=estimated,
            )
            for queue in sorted(counts)
        ]

    def state_totals(self, stats: Sequence[QueueStats]) -> dict[JobState, int]:
        """Jobs by state over all queues (every state present, zero when none)."""
        totals = dict.fromkeys(JobState, 0)
        for q in stats:
            for state, n in q.counts.items():
                totals[state] = totals.get(state, 0) + n
        return totals

    # -- throughput and timings -------------------------------------------------------------

    def throughput(self, *, now: datetime, minutes: int = 60) -> list[MinuteBucket]:
        """Jobs finished per minute over the last ``minutes`` minutes (oldest first, one bucket
        per minute including empty ones, the current minute last)."""
        end_minute = _minute_floor(now)
        start = end_minute - timedelta(minutes=minutes - 1)
        bucket = self._epoch_minute(jobs.c.finished_at)
        query = (
            sa.select(bucket.label("minute"), jobs.c.state, sa.func.count())
            .where(jobs.c.finished_at.is_not(None), jobs.c.finished_at >= start)
            .group_by(bucket, jobs.c.state)
        )
        found: dict[int, dict[str, int]] = {}
        with translate_errors(self.store.url), self._connect() as conn:
            for minute, state, n in conn.execute(query):
                row = found.setdefault(int(minute), {})
                row[state] = row.get(state, 0) + int(n)
        out = []
        for i in range(minutes):
            at = start + timedelta(minutes=i)
            row = found.get(int(at.timestamp()) // 60, {})
            out.append(
                MinuteBucket(
                    at,
                    succeeded=row.get(JobState.SUCCEEDED.value, 0),
                    failed=row.get(JobState.FAILED.value, 0),
                    cancelled=row.get(JobState.CANCELLED.value, 0),
                )
            )
        return out

    def _epoch_minute(self, column: Any) -> ColumnElement[Any]:
        if self.store.is_postgresql:
            return sa.func.floor(sa.extract("epoch", column) / 60)
        # SQLite keeps naive UTC text; strftime('%s') reads it as UTC.
        return sa.cast(sa.func.strftime("%s", column), sa.Integer) // 60

    def timings(
        self, *, now: datetime, window: timedelta = timedelta(hours=1), sample: int = 2000
    ) -> Timings:
        """Latency and duration percentiles over the ``sample`` most recently finished jobs of
        the last ``window``."""
        query = (
            sa.select(jobs.c.run_at, jobs.c.started_at, jobs.c.finished_at)
            .where(
                jobs.c.finished_at.is_not(None),
                jobs.c.finished_at >= now - window,
                jobs.c.started_at.is_not(None),
            )
            .order_by(jobs.c.finished_at.desc())
            .limit(sample)
        )
        latency: list[float] = []
        duration: list[float] = []
        with translate_errors(self.store.url), self._connect() as conn:
            for run_at, started_at, finished_at in conn.execute(query):
                latency.append(max((started_at - run_at).total_seconds(), 0.0))
                duration.append(max((finished_at - started_at).total_seconds(), 0.0))
        return Timings(Distribution.of(latency), Distribution.of(duration), window, sample)

    def breakdown(
        self, *, now: datetime, window: timedelta = timedelta(hours=1), sample: int = 2000
    ) -> Breakdown:
        """Per queue and per job name timings and outcomes (see :class:`Breakdown`)."""
        since = now - window
        recent = (
            sa.select(
                jobs.c.queue, jobs.c.name, jobs.c.run_at, jobs.c.started_at, jobs.c.finished_at
            )
            .where(
                jobs.c.finished_at.is_not(None),
                jobs.c.finished_at >= since,
                jobs.c.started_at.is_not(None),
            )
            .order_by(jobs.c.finished_at.desc())
            .limit(sample)
        )
        outcomes = (
            sa.select(jobs.c.name, jobs.c.state, sa.func.count())
            .where(jobs.c.finished_at.is_not(None), jobs.c.finished_at >= since)
            .group_by(jobs.c.name, jobs.c.state)
        )
        latency: dict[str, list[float]] = {}
        duration: dict[str, list[float]] = {}
        finished: dict[str, dict[str, int]] = {}
        with translate_errors(self.store.url), self._connect() as conn:
            for queue, name, run_at, started_at, finished_at in conn.execute(recent):
                wait = max((started_at - run_at).total_seconds(), 0.0)
                latency.setdefault(queue, []).append(wait)
                took = max((finished_at - started_at).total_seconds(), 0.0)
                duration.setdefault(name, []).append(took)
            for name, state, n in conn.execute(outcomes):
                by_state = finished.setdefault(name, {})
                by_state[state] = by_state.get(state, 0) + int(n)
        return Breakdown(
            {q: Distribution.of(v) for q, v in sorted(latency.items())},
            {n: Distribution.of(v) for n, v in sorted(duration.items())},
            dict(sorted(finished.items())),
        )

    def name_windows(
        self, name: str, *, now: datetime, windows: Sequence[timedelta] = NAME_WINDOWS
    ) -> list[NameWindow]:
        """``name``'s outcomes over each window, and the durations of its 2000 most recent
        finishes in the window: one scan of ``ix_corequeue_jobs_name_finished`` over the
        widest window, and its 2000 most recent finishes (each window's are among them)."""
        if not windows:
            return []
        where = (
            jobs.c.name == name,
            jobs.c.finished_at.is_not(None),
            jobs.c.finished_at >= now - max(windows),
        )
        per_window = [
            sa.func.sum(sa.case((jobs.c.finished_at >= now - w, 1), else_=0)) for w in windows
        ]
        counts = sa.select(jobs.c.state, *per_window).where(*where).group_by(jobs.c.state)
        recent = (
            sa.select(jobs.c.started_at, jobs.c.finished_at)
            .where(*where, jobs.c.started_at.is_not(None))
            .order_by(jobs.c.finished_at.desc())
            .limit(2000)
        )
        finished: list[dict[str, int]] = [{} for _ in windows]
        with translate_errors(self.store.url), self._connect() as conn:
            for state, *ns in conn.execute(counts):
                for by_state, n in zip(finished, ns, strict=True):
                    if n:
                        by_state[state] = by_state.get(state, 0) + int(n)
            ends = list(conn.execute(recent))
        out = []
        for window, by_state in zip(windows, finished, strict=True):
            since = now - window
            took = [max((f - s).total_seconds(), 0.0) for s, f in ends if f >= since]
            out.append(NameWindow(window, by_state, Distribution.of(took)))
        return out

    def attempt_counts(self, *, succeeded: int | None = None) -> dict[Outcome, int]:
        """Recorded attempts by outcome (every outcome present, zero when none). Successful
        attempts are kept on their job rows (``endings.ON_JOB_ROW``): one per job in
        ``ON_JOB_ROW_STATE``, whose count the caller may know already (``succeeded``, from
        :meth:`queue_stats`). Estimates for large tables (:mod:`corequeue.store.estimates`)."""
        counts = dict.fromkeys(Outcome, 0)
        others = [o for o in Outcome if o is not ON_JOB_ROW]
        with translate_errors(self.store.url), self._connect() as conn:
            by_outcome, _ = estimates.outcome_counts(conn, others)
            if succeeded is None:
                found, _ = estimates.queue_state_counts(conn)
                succeeded = sum(n for _, s, n in found if s == ON_JOB_ROW_STATE.value)
        for text, n in by_outcome.items():
            if text != ON_JOB_ROW.value:  # rows written before: on job rows
                outcome = read_outcome(text)
                counts[outcome] = counts.get(outcome, 0) + n
        counts[ON_JOB_ROW] = succeeded
        return counts

    # -- workers --------------------------------------------------------------------------

    def running_jobs(self, *, limit: int = 1000) -> list[RunningJob]:
        query = (
            sa.select(jobs.c.id, jobs.c.name, jobs.c.queue, jobs.c.worker_id, jobs.c.started_at)
            .where(jobs.c.state == JobState.RUNNING.value)
            .order_by(jobs.c.id)
            .limit(limit)
        )
        with translate_errors(self.store.url), self._connect() as conn:
            return [RunningJob(*row) for row in conn.execute(query)]

    def worker_statuses(self, *, now: datetime, heartbeat_timeout: float) -> list[WorkerStatus]:
        """Every worker row, newest heartbeat first, with the jobs each one runs."""
        by_worker: dict[str | None, list[RunningJob]] = {}
        for job in self.running_jobs():
            by_worker.setdefault(job.worker_id, []).append(job)
        out = []
        for w in self.store.worker_list():
            age = max((now - w.last_beat_at).total_seconds(), 0.0)
            out.append(WorkerStatus(w, age <= heartbeat_timeout, age, by_worker.get(w.id, [])))
        out.sort(key=lambda s: s.beat_age)
        return out

    # -- schedules and delayed jobs ---------------------------------------------------------

    def schedule_rows(self) -> list[ScheduleRow]:
        """Every stored schedule, by name, with its last job's state (None once pruned)."""
        return schedule_list(self.store)

    def delayed_jobs(self, *, now: datetime, limit: int = 100) -> tuple[list[JobSummary], int]:
        """Waiting jobs whose run_at is in the future, soonest first, and how many there are."""
        where = (jobs.c.state == JobState.REQUESTED.value, jobs.c.run_at > now)
        query = (
            sa.select(*_SUMMARY_COLUMNS)
            .where(*where)
            .order_by(jobs.c.run_at, jobs.c.id)
            .limit(limit)
        )
        with translate_errors(self.store.url), self._connect() as conn:
            found = [_summary(r) for r in conn.execute(query)]
            total = conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one()
        return found, int(total)

    # -- history helpers --------------------------------------------------------------------

    def job_count(self, filter: JobFilter) -> int:
        """How many jobs match ``filter`` (the selection a bulk action applies to)."""
        query = sa.select(sa.func.count()).select_from(jobs).where(*filter_clauses(filter))
        with translate_errors(self.store.url), self._connect() as conn:
            return int(conn.execute(query).scalar_one())

    def job_ids(self, filter: JobFilter, *, batch: int = 500) -> Iterator[list[int]]:
        """Ids of the jobs matching ``filter``, newest first, in batches (keyset)."""
        before: int | None = None
        while True:
            query = (
                sa.select(jobs.c.id)
                .where(*filter_clauses(filter))
                .order_by(jobs.c.id.desc())
                .limit(batch)
            )
            if before is not None:
                query = query.where(jobs.c.id < before)
            with translate_errors(self.store.url), self._connect() as conn:
                ids = list(conn.execute(query).scalars())
            if ids:
                yield ids
            if len(ids) < batch:
                return
            before = ids[-1]

    def job_page(
        self,
        filter: JobFilter,
        *,
        limit: int = 50,
        before_id: int | None = None,
        after_id: int | None = None,
        window: tuple[int, int] | None = None,
    ) -> list[JobSummary]:
        """Up to ``limit`` matching jobs, newest first: older than ``before_id``, or (keyset,
        the other way) the ones just newer than ``after_id``. ``window``: the ids a search
        looks among (see :func:`filter_clauses`)."""
        clauses = filter_clauses(filter, window=window)
        query = sa.select(*_SUMMARY_COLUMNS).where(*clauses).limit(limit)
        if after_id is not None:
            query = query.where(jobs.c.id > after_id).order_by(jobs.c.id)
        else:
            query = query.order_by(jobs.c.id.desc())
        if before_id is not None:
            query = query.where(jobs.c.id < before_id)
        with translate_errors(self.store.url), self._connect() as conn:
            found = [_summary(r) for r in conn.execute(query)]
        return found[::-1] if after_id is not None else found

    def id_range(self) -> tuple[int, int] | None:
        """The lowest and highest job ids (two primary-key probes), None without jobs."""
        query = sa.select(sa.func.min(jobs.c.id), sa.func.max(jobs.c.id))
        with translate_errors(self.store.url), self._connect() as conn:
            low, high = conn.execute(query).one()
        return None if low is None else (int(low), int(high))

    def job_list_after(
        self, filter: JobFilter, *, after_id: int, limit: int = 50
    ) -> list[JobSummary]:
        """The page before one :meth:`job_page` returned: :meth:`job_page` with ``after_id``."""
        return self.job_page(filter, after_id=after_id, limit=limit)

    def distinct_names(self, *, limit: int = 200) -> list[str]:
        """Job names present in the table (for filter suggestions): those of finished jobs by
        a skip scan of ``ix_corequeue_jobs_name_finished`` (one index probe per name), and
        those of waiting and running jobs."""
        finished = jobs.c.finished_at.is_not(None)
        seen = sa.select(sa.func.min(jobs.c.name).label("name")).where(finished)
        walk = seen.cte("names", recursive=True)
        following = sa.select(sa.func.min(jobs.c.name)).where(finished, jobs.c.name > walk.c.name)
        walk = walk.union_all(
            sa.select(following.scalar_subquery()).where(walk.c.name.is_not(None))
        )
        names = sa.select(walk.c.name).where(walk.c.name.is_not(None)).limit(limit)
        active = [
            sa.select(jobs.c.name).where(sa.literal_column(f"state = '{s.value}'")).distinct()
            for s in (JobState.REQUESTED, JobState.RUNNING)
        ]
        with translate_errors(self.store.url), self._connect() as conn:
            found = set(conn.execute(names).scalars())
            for query in active:
                found.update(conn.execute(query).scalars())
        return sorted(found)[:limit]

    def queue_names(self) -> list[str]:
        """The queues the overview lists (see :func:`estimates.queue_state_counts`)."""
        with translate_errors(self.store.url), self._connect() as conn:
            found, _ = estimates.queue_state_counts(conn)
        return sorted({queue for queue, _, _ in found})


def _percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _minute_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _utc(store: Store, value: Any) -> datetime | None:
    """Aggregates (min) bypass the column type on SQLite: convert like UTCDateTime does."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return schema.UTCDateTime().process_result_value(value, store.engine.dialect)
