"""``/metrics``: the queue's state in the Prometheus text exposition format (version 0.0.4).

Written by hand (no client library needed at run time). Every value is read from the database at
scrape time, so any dashboard instance reports the whole fleet.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from corequeue.core import limits
from corequeue.core.states import JobState
from corequeue.store.monitoring import Breakdown, Distribution, Monitor, QueueStats, WorkerStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        self.lines.append(
            f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}"
        )

    def summary(self, name: str, help_text: str, dist: Distribution) -> None:
        self.family(name, "summary", help_text)
        self.summary_samples(name, {}, dist)

    def summary_samples(self, name: str, labels: Mapping[str, str], dist: Distribution) -> None:
        for q, v in dist.quantiles.items():
            self.sample(name, {**labels, "quantile": q}, float("nan") if v is None else v)
        self.sample(f"{name}_sum", labels, dist.total)
        self.sample(f"{name}_count", labels, dist.count)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_metrics(
    monitor: Monitor, *, now: datetime, heartbeat_timeout: float, window: timedelta
) -> str:
    """The metrics page as text. Families:

    - ``corequeue_jobs{queue,state}``: jobs in the table by queue and state;
    - ``corequeue_jobs_ready{queue}`` and ``corequeue_jobs_scheduled{queue}``: waiting jobs
      whose run_at has come, or is still ahead;
    - ``corequeue_oldest_ready_job_age_seconds{queue}``: how long the oldest ready job has
      waited past its run_at (0 when none waits);
    - ``corequeue_attempts{outcome}``: attempts recorded, by outcome (pruning lowers it);
    - ``corequeue_jobs_finished_recently{state}``: jobs finished in the window;
    - ``corequeue_pickup_latency_seconds`` and ``corequeue_job_duration_seconds``: summaries
      over the most recent jobs finished in the window;
    - ``corequeue_queue_pickup_delay_seconds{queue}``: the pick-up latency summary by queue
      (what an autoscaler acts on, with the oldest ready job's age);
    - ``corequeue_job_name_duration_seconds{name}``: the duration summary by job name, and
      ``corequeue_job_name_finished_recently{name,state}``: each name's outcomes in the window;
    - ``corequeue_workers{status}`` and ``corequeue_worker_heartbeat_age_seconds{worker,host}``;
    - ``corequeue_running_jobs{worker}``;
    - flow control: ``corequeue_queue_paused{queue}`` (1 or 0),
      ``corequeue_queue_concurrency_limit{queue}``, ``corequeue_queue_rate_limit{queue,period}``
      (starts per period, the period in seconds as a label) and
      ``corequeue_schedule_paused{schedule}``.
    """
    w = _Writer()
    stats = monitor.queue_stats(now=now)
    _queue_families(w, stats, now)
    succeeded = monitor.state_totals(stats)[JobState.SUCCEEDED]
    _attempt_families(w, monitor, now, window, succeeded)
    _breakdown_families(w, monitor.breakdown(now=now, window=window), window)
    _worker_families(w, monitor.worker_statuses(now=now, heartbeat_timeout=heartbeat_timeout))
    _flow_families(w, monitor)
    return w.text()


def _queue_families(w: _Writer, stats: list[QueueStats], now: datetime) -> None:
    """What the table holds now: jobs by queue and state, ready and scheduled, oldest wait."""
    w.family("corequeue_jobs", "gauge", "Jobs in the table by queue and state.")
    for q in stats:
        unknown = [s for s in q.counts if s not in set(JobState)]  # rows this code can't read
        for state in [*JobState, *unknown]:
            w.sample(
                "corequeue_jobs", {"queue": q.queue, "state": state.value}, q.counts.get(state, 0)
            )
    w.family("corequeue_jobs_ready", "gauge", "Waiting jobs whose run_at has come.")
    for q in stats:
        w.sample("corequeue_jobs_ready", {"queue": q.queue}, q.ready)
    w.family("corequeue_jobs_scheduled", "gauge", "Waiting jobs whose run_at is in the future.")
    for q in stats:
        w.sample("corequeue_jobs_scheduled", {"queue": q.queue}, q.scheduled)
    w.family(
        "corequeue_oldest_ready_job_age_seconds",
        "gauge",
        "Seconds the oldest ready job of each queue has waited past its run_at.",
    )
    for q in stats:
        w.sample(
            "corequeue_oldest_ready_job_age_seconds", {"queue": q.queue}, q.oldest_wait(now) or 0
        )


def _attempt_families(
    w: _Writer, monitor: Monitor, now: datetime, window: timedelta, succeeded: int
) -> None:
    """What happened: attempts by outcome, jobs finished in ``window``, and their timings."""
    w.family("corequeue_attempts", "gauge", "Attempts recorded, by outcome (pruning lowers it).")
    for outcome, n in monitor.attempt_counts(succeeded=succeeded).items():
        w.sample("corequeue_attempts", {"outcome": outcome.value}, n)

    minutes = max(int(window.total_seconds() // 60), 1)
    buckets = monitor.throughput(now=now, minutes=minutes)
    w.family(
        "corequeue_jobs_finished_recently",
        "gauge",
        f"Jobs that reached a final state in the last {minutes} minutes, by state.",
    )
    finished = {
        JobState.SUCCEEDED: sum(b.succeeded for b in buckets),
        JobState.FAILED: sum(b.failed for b in buckets),
        JobState.CANCELLED: sum(b.cancelled for b in buckets),
    }
    for state, n in finished.items():
        w.sample("corequeue_jobs_finished_recently", {"state": state.value}, n)

    timings = monitor.timings(now=now, window=window)
    w.summary(
        "corequeue_pickup_latency_seconds",
        "Seconds from run_at to start, over recently finished jobs.",
        timings.latency,
    )
    w.summary(
        "corequeue_job_duration_seconds",
        "Seconds from start to finish of the last attempt, over recently finished jobs.",
        timings.duration,
    )


def _breakdown_families(w: _Writer, b: Breakdown, window: timedelta) -> None:
    """Timings by queue and by job name, and each name's outcomes in ``window``."""
    w.family(
        "corequeue_queue_pickup_delay_seconds",
        "summary",
        "Seconds from run_at to start by queue, over recently finished jobs.",
    )
    for queue, dist in b.latency_by_queue.items():
        w.summary_samples("corequeue_queue_pickup_delay_seconds", {"queue": queue}, dist)
    w.family(
        "corequeue_job_name_duration_seconds",
        "summary",
        "Seconds from start to finish of the last attempt by job name, over recently finished "
        "jobs.",
    )
    for name, dist in b.duration_by_name.items():
        w.summary_samples("corequeue_job_name_duration_seconds", {"name": name}, dist)
    minutes = max(int(window.total_seconds() // 60), 1)
    w.family(
        "corequeue_job_name_finished_recently",
        "gauge",
        f"Jobs that reached a final state in the last {minutes} minutes, by name and state.",
    )
    for name, states in b.finished_by_name.items():
        for state, n in sorted(states.items()):
            w.sample("corequeue_job_name_finished_recently", {"name": name, "state": state}, n)


def _worker_families(w: _Writer, statuses: list[WorkerStatus]) -> None:
    """The fleet: workers alive and silent, each one's heartbeat age and running jobs."""
    w.family("corequeue_workers", "gauge", "Worker rows by heartbeat status.")
    alive = sum(1 for s in statuses if s.alive)
    w.sample("corequeue_workers", {"status": "alive"}, alive)
    w.sample("corequeue_workers", {"status": "silent"}, len(statuses) - alive)
    w.family(
        "corequeue_worker_heartbeat_age_seconds", "gauge", "Seconds since each worker's heartbeat."
    )
    for s in statuses:
        w.sample(
            "corequeue_worker_heartbeat_age_seconds",
            {"worker": s.worker.id, "host": s.worker.host},
            s.beat_age,
        )
    w.family("corequeue_running_jobs", "gauge", "Jobs running, by worker.")
    for s in statuses:
        w.sample("corequeue_running_jobs", {"worker": s.worker.id}, len(s.running))


def _flow_families(w: _Writer, monitor: Monitor) -> None:
    """Paused queues and schedules, and the queues' limits (database state)."""
    states = monitor.store.queue_states()
    w.family("corequeue_queue_paused", "gauge", "1 for a paused queue, 0 for a resumed one.")
    for name, q in states.items():
        w.sample("corequeue_queue_paused", {"queue": name}, 1 if q.paused else 0)
    w.family("corequeue_queue_concurrency_limit", "gauge", "The most jobs of a queue run at once.")
    for name, q in states.items():
        if q.concurrency_limit is not None:
            w.sample("corequeue_queue_concurrency_limit", {"queue": name}, q.concurrency_limit)
    w.family("corequeue_queue_rate_limit", "gauge", "The most starts of a queue per period.")
    for name, q in states.items():
        if q.rate_limit is not None:
            rate = limits.parse_rate(q.rate_limit)
            labels = {"queue": name, "period": _number(rate.period)}
            w.sample("corequeue_queue_rate_limit", labels, rate.count)
    w.family("corequeue_schedule_paused", "gauge", "1 for a paused schedule, 0 otherwise.")
    for row in monitor.schedule_rows():
        w.sample("corequeue_schedule_paused", {"schedule": row.name}, 1 if row.paused else 0)
