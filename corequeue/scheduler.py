"""Scheduled jobs: declared in configuration or with :func:`schedule`, fired by every worker.

Any number of workers run the scheduler. The core (:mod:`corequeue.core.cron`) decides which
occurrence is due; each occurrence is enqueued exactly once because the schedule's stored last
occurrence moves by compare-and-set in the same transaction as the job's insert. The state is in
the database, so restarts and deploys neither skip nor repeat an occurrence.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from corequeue import registry
from corequeue.commands import add_common_options, emit, import_modules, open_store, settings_from
from corequeue.config import Settings
from corequeue.core import cron, uniqueness
from corequeue.core.errors import ConfigError, CorequeueError
from corequeue.jobs import EnqueueOptions, Job, prepare
from corequeue.store.queries import Store
from corequeue.store.schedules import (
    ScheduleRow,
    ScheduleSpec,
    schedule_fire,
    schedule_list,
    schedule_pause,
    schedule_sync_many,
)

log = logging.getLogger("corequeue.scheduler")

_KEYS = {"job", "cron", "timezone", "args", "kwargs", "queue", "priority", "missed"}


@dataclass(frozen=True)
class ScheduleDefinition:
    """One schedule, validated: its cron schedule and the job it enqueues."""

    cron: cron.CronSchedule
    job: str  # registry name
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None

    @property
    def name(self) -> str:
        return self.cron.name

    @property
    def spec(self) -> ScheduleSpec:
        return ScheduleSpec(self.name, self.job, self.cron.expression, self.cron.timezone)

    def build_job(self) -> Job:
        job: Job = registry.resolve(self.job)(*self.args, **dict(self.kwargs))
        return job

    def options(self, *, delay: datetime | None = None) -> EnqueueOptions:
        """The enqueue options of the jobs it enqueues (to run at ``delay``, an occurrence)."""
        return EnqueueOptions(queue=self.queue, priority=self.priority, delay=delay)


_DECLARED: dict[str, ScheduleDefinition] = {}


def schedule(
    name: str,
    *,
    job: Job,
    cron: str,
    timezone: str = "UTC",
    missed: str = "skip",
    queue: str | None = None,
    priority: int | None = None,
) -> ScheduleDefinition:
    """Declare a schedule in Python: ``job`` (an instance: its constructor arguments are used
    each time) is enqueued at every occurrence of ``cron`` in ``timezone``. Declare it in a
    module the workers import. Raises ConfigError for an invalid expression, zone or policy."""
    if not isinstance(job, Job):
        raise ConfigError(f"schedule {name!r}: job must be a Job instance, got {job!r}")
    definition = _define(
        name,
        {
            "job": registry.job_name(type(job)),
            "cron": cron,
            "timezone": timezone,
            "missed": missed,
            "args": list(job._cq_args),
            "kwargs": dict(job._cq_kwargs),
            "queue": queue,
            "priority": priority,
        },
        source="corequeue.schedule()",
    )
    _DECLARED[name] = definition
    return definition


def _define(name: str, table: Mapping[str, Any], *, source: str) -> ScheduleDefinition:
    where = f"schedule {name!r} ({source})"
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KEYS))}"
        )
    for required in ("job", "cron"):
        if not isinstance(table.get(required), str) or not table[required].strip():
            raise ConfigError(f"{where}: {required!r} is required and must be a string")
    args = table.get("args") or []
    kwargs = table.get("kwargs") or {}
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise ConfigError(f"{where}: args must be a list and kwargs a table")
    priority = table.get("priority")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        raise ConfigError(f"{where}: priority must be an integer")
    queue = table.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ConfigError(f"{where}: queue must be a non-empty string")
    schedule_ = cron.parse_schedule(
        name,
        table["cron"],
        str(table.get("timezone", "UTC")),
        str(table.get("missed", "skip")),
    )
    return ScheduleDefinition(
        cron=schedule_,
        job=registry.canonical_name(table["job"]),
        args=tuple(args),
        kwargs=dict(kwargs),
        queue=queue,
        priority=priority,
    )


def load_definitions(settings: Settings) -> list[ScheduleDefinition]:
    """Every schedule of the configuration and of :func:`schedule` calls (the configuration
    wins on a name clash), each checked: expression, zone, policy, and a job the worker knows
    with parameters it can store. Raises ConfigError naming the schedule."""
    found: dict[str, ScheduleDefinition] = dict(_DECLARED)
    source = f"[tool.corequeue.schedule] in {settings.config_file or 'configuration'}"
    for name, table in settings.schedule.items():
        found[name] = _define(name, table, source=source)
    now = datetime.now(UTC)
    for definition in found.values():
        try:
            prepare(
                definition.build_job(),
                definition.options(),
                now=now,
                source=f"schedule {definition.name}",
            )
        except CorequeueError as exc:
            raise ConfigError(f"schedule {definition.name!r}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(
                f"schedule {definition.name!r}: the job's arguments do not fit: {exc}"
            ) from None
    return sorted(found.values(), key=lambda d: d.name)


class Scheduler:
    """The worker service that fires schedules; ``run_once(now)`` is one tick.

    Every ``resync_every`` seconds (and at the first tick) it makes the stored schedules agree
    with its definitions (:func:`schedule_sync_many`); between syncs it reads the stored rows only
    when one of its schedules may be due. A definition whose stored row holds another worker's
    newer definition is not fired by this worker.
    """

    name = "scheduler"
    interval = 0.25  # ticks are cheap: the database is read only when something is due
    needs_settled = False  # it reads and writes schedules, not this worker's jobs
    resync_every = 30.0
    #: A stored schedule that no worker configured with it touched for this long is deleted.
    stale_after = timedelta(seconds=90)

    def __init__(self, store: Store, definitions: Sequence[ScheduleDefinition]) -> None:
        self.store = store
        self.definitions = list(definitions)
        self._loaded_at: datetime | None = None  # the first tick: when this configuration began
        self._last_sync: datetime | None = None
        self._next_check: datetime | None = None
        self._deferred: frozenset[str] = frozenset()

    def run_once(self, now: datetime) -> bool:
        """One tick. Returns whether it enqueued a job."""
        if self._last_sync is None or not (
            0 <= (now - self._last_sync).total_seconds() < self.resync_every
        ):
            self._sync(now)
        active = [d for d in self.definitions if d.name not in self._deferred]
        if not active or (self._next_check is not None and now < self._next_check):
            return False
        rows = {r.name: r for r in schedule_list(self.store)}
        next_checks = []
        enqueued = False
        for definition in active:
            row = rows.get(definition.name)
            if row is None or (row.job, row.expression, row.timezone) != (
                definition.job,
                definition.cron.expression,
                definition.cron.timezone,
            ):
                continue  # not stored yet, or changed by another worker: the next sync decides
            if row.paused:
                continue  # fires nothing; on resume, its missed policy decides the gap
            decision = cron.due(
                definition.cron, last=row.last_occurrence, now=now, first_seen=row.first_seen_at
            )
            next_checks.append(decision.next_check)
            if decision.last is None or decision.last == row.last_occurrence:
                continue
            enqueued = self._fire(definition, row, decision, now) or enqueued
        self._next_check = min(next_checks) if next_checks else None
        return enqueued

    def _sync(self, now: datetime) -> None:
        if self._loaded_at is None:
            self._loaded_at = now
        result = schedule_sync_many(
            self.store,
            [d.spec for d in self.definitions],
            now=now,
            loaded_at=self._loaded_at,
            stale_after=self.stale_after,
        )
        for name in sorted(result.deferred - self._deferred):
            log.warning(
                "schedule %s: a worker started later stores another definition of it; "
                "this worker leaves it to that one (restart it to apply its own)",
                name,
            )
        self._deferred = result.deferred
        self._last_sync = now
        self._next_check = None

    def _fire(
        self, definition: ScheduleDefinition, row: ScheduleRow, decision: cron.Due, now: datetime
    ) -> bool:
        """Fire (or skip) the decided occurrence. Returns whether this worker enqueued a job."""
        assert decision.last is not None
        job_row = None
        if decision.enqueue is not None:
            job_row = prepare(
                definition.build_job(),
                definition.options(delay=decision.enqueue),
                now=now,
                source=f"schedule {definition.name}",
            ).row
            on_conflict = uniqueness.for_schedule(job_row.on_conflict)
            job_row = dataclasses.replace(job_row, on_conflict=on_conflict)
        fired = schedule_fire(
            self.store,
            definition.spec,
            seen_last=row.last_occurrence,
            seen_first_seen=row.first_seen_at,
            new_last=decision.last,
            job=job_row,
            now=now,
        )
        if fired is None:
            return False  # another worker decided this tick's occurrences
        if fired.job_id is not None and decision.enqueue is not None:
            log.info(
                "schedule %s fired occurrence %s: job_id=%d",
                definition.name,
                decision.enqueue.isoformat(),
                fired.job_id,
            )
        if decision.skipped:
            log.warning(
                "schedule %s: %d missed occurrence(s) not enqueued (missed=%s)",
                definition.name,
                decision.skipped,
                definition.cron.missed,
            )
        return fired.job_id is not None


def worker_services(store: Store, settings: Settings) -> list[Scheduler]:
    """The scheduler service for a worker. Raises ConfigError (the worker refuses to start)."""
    return [Scheduler(store, load_definitions(settings))]


# -- the `corequeue schedules` command ---------------------------------------------------------


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "schedules",
        help="list schedules (expression, zone, next and last runs), pause, resume or run one",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=("list", "pause", "resume", "run"),
        default="list",
        help="list (default); pause NAME, resume NAME; run NAME: enqueue one occurrence now",
    )
    p.add_argument("name", nargs="?", help="the schedule (pause, resume, run)")
    add_common_options(p)
    p.set_defaults(handler=cmd_schedules)


def run_now(store: Store, definition: ScheduleDefinition, *, now: datetime) -> int:
    """Enqueue one occurrence of ``definition`` now, outside its cron rhythm (its source says
    manual; its stored last occurrence does not move). Returns the job's id."""
    row = prepare(
        definition.build_job(),
        definition.options(),
        now=now,
        source=f"schedule {definition.name} (manual)",
    ).row
    (inserted,) = store.job_insert_many([row], now=now)
    return inserted.id


def _control(args: argparse.Namespace, store: Store, definitions: Mapping[str, Any]) -> int:
    name = args.name
    now = datetime.now(UTC)
    if args.action == "run":
        definition = definitions.get(name)
        if definition is None:
            raise ConfigError(
                f"no schedule {name!r} in this configuration: `corequeue schedules` lists them"
            )
        job_id = run_now(store, definition, now=now)
        emit(args, {"name": name, "job_id": job_id}, f"schedule {name}: job {job_id} enqueued")
        return 0
    paused = args.action == "pause"
    if not schedule_pause(store, name, paused=paused):
        raise ConfigError(
            f"no stored schedule {name!r}: a worker stores a configured schedule when it starts"
            " (`corequeue schedules` lists them)"
        )
    emit(args, {"name": name, "paused": paused}, f"schedule {name}: {args.action}d")
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    import_modules(settings.imports)
    definitions = {d.name: d for d in load_definitions(settings)}
    store = open_store(settings)
    store.check_schema()
    if args.action != "list":
        if not args.name:
            raise ConfigError(f"corequeue schedules {args.action} needs a schedule name")
        return _control(args, store, definitions)
    stored = {r.name: r for r in schedule_list(store)}
    now = datetime.now(UTC)
    data = []
    for name in sorted(definitions.keys() | stored.keys()):
        d = definitions.get(name)
        row = stored.get(name)
        # The last run: when the last job a schedule enqueued started (or, still waiting, when
        # it is to run). Not the stored last occurrence: under `skip` that may be one skipped.
        last_run = row and (row.last_job_started_at or row.last_job_run_at)
        data.append(
            {
                "name": name,
                "job": d.job if d else row.job if row else None,
                "cron": d.cron.expression if d else row.expression if row else None,
                "timezone": d.cron.timezone if d else row.timezone if row else None,
                "missed": d.cron.missed if d else None,
                "configured": d is not None,
                "next_run": cron.next_occurrence(d.cron, now).isoformat() if d else None,
                "last_run": last_run.isoformat() if last_run else None,
                "last_occurrence": row.last_occurrence.isoformat()
                if row and row.last_occurrence
                else None,
                "last_job_id": row.last_job_id if row else None,
                "last_outcome": row.last_job_state if row else None,
                "paused": bool(row and row.paused),
            }
        )
    widths = (20, 16, 16, 20, 20)
    rows = [("name", "cron", "zone", "next run (UTC)", "last run (UTC)", "outcome")]
    for item in data:
        rows.append(
            (
                str(item["name"]),
                str(item["cron"] or ""),
                str(item["timezone"] or ""),
                str(item["next_run"] or "-")[:19],
                str(item["last_run"] or "-")[:19],
                str(item["last_outcome"] or "-")
                + ("  (paused)" if item["paused"] else "")
                + ("" if item["configured"] else "  (no longer configured)"),
            )
        )
    lines = [
        " ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + " " + row[-1]
        for row in rows
    ]
    emit(args, data, "\n".join(lines) if data else "no schedules")
    return 0
