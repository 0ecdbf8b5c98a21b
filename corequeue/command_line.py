"""The ``corequeue`` command's parser and subcommands (entered through :mod:`corequeue.cli`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from corequeue import bench, flow, hooks, jobtext, registry, scheduler
from corequeue.commands import (
    LOG_LEVELS,
    Parser,
    add_common_options,
    emit,
    finite_float,
    import_modules,
    int_between,
    job_id,
    open_store,
    settings_from,
)
from corequeue.config import Settings, check_max_processes, parse_duration
from corequeue.core import uniqueness
from corequeue.core.display import missing_job
from corequeue.core.errors import ConfigError, CorequeueError, JobNotFound
from corequeue.core.params import decode_value
from corequeue.core.states import JobState
from corequeue.core.text import one_line
from corequeue.jobs import INT_MAX, INT_MIN, EnqueueOptions, enqueue
from corequeue.logs import LOG_FORMATS, configure_logging
from corequeue.middleware import build_chain
from corequeue.store.records import JobFilter, JobRecord
from corequeue.web import command as web_command

log = logging.getLogger("corequeue.cli")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``corequeue`` command and all its subcommands."""
    parser = Parser(prog="corequeue", description="Background jobs kept in your SQL database.")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=LOG_LEVELS,
        help="how much to log: DEBUG, INFO, WARNING or ERROR (default INFO); also accepted "
        "after the subcommand",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_run(sub)
    _add_django_option(sub.choices["run"])
    _add_enqueue(sub)
    add_common_options(sub.add_parser("stats", help="counts by queue and state, and live workers"))
    _add_jobs(sub)
    prune = sub.add_parser("prune", help="delete finished jobs past the retention")
    add_common_options(prune)
    prune.add_argument("--older-than", metavar="DURATION", help="e.g. 7d, 12h (default: retention)")
    add_common_options(sub.add_parser("migrate", help="create or upgrade the corequeue tables"))
    # Commands that live in their own modules.
    scheduler.add_command(sub)
    flow.add_command(sub)
    web_command.add_command(sub)
    bench.add_command(sub)
    return parser


def _add_run(sub: Any) -> None:
    defaults = Settings()
    run = sub.add_parser("run", help="run a worker")
    add_common_options(run, json_flag=False)
    run.add_argument(
        "--queue",
        dest="queues",
        action="append",
        default=[],
        metavar="NAME[=K]",
        help="queue to serve (repeatable; default: every queue); NAME=K gives it a share: "
        "its jobs use at most K of the worker's children at once (default: no cap)",
    )
    run.add_argument(
        "--max-processes",
        type=int,
        metavar="N",
        help=f"child processes (default {defaults.max_processes})",
    )
    run.add_argument(
        "--max-jobs-per-process",
        type=int,
        metavar="N",
        help=f"recycle a child after N jobs (default {defaults.max_jobs_per_process}: never)",
    )
    run.add_argument(
        "--max-pending-per-process",
        type=int,
        metavar="N",
        help="jobs handed to one child ahead of the one it runs, at most "
        f"(default {defaults.max_pending_per_process})",
    )
    run.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help=f"async jobs in flight per child (default {defaults.concurrency})",
    )
    run.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"sync jobs in flight per child, in threads (default {defaults.threads})",
    )
    _add_run_timing(run, defaults)
    run.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        help="PostgreSQL: wait for the WAL flush on the worker's own commits "
        f"(default {'on' if defaults.synchronous_commit else 'off'})",
    )
    run.add_argument(
        "--burst", action="store_true", help="exit 0 once nothing is ready (default: run on)"
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="allow --max-processes above 4 per CPU (default: refused)",
    )
    _add_monitoring_options(run)


def _add_monitoring_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text lines, or one JSON object a line (default text)",
    )
    run.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="serve /livez and /readyz on this port (default: none)",
    )
    run.add_argument(
        "--health-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address --health-port listens on (default 127.0.0.1)",
    )


def _add_run_timing(run: argparse.ArgumentParser, defaults: Settings) -> None:
    """The run options that are durations (seconds)."""
    run.add_argument(
        "--stats-every",
        metavar="S",
        help=f"log stats every S seconds (default {defaults.stats_every:g})",
    )
    run.add_argument(
        "--heartbeat-interval",
        metavar="S",
        help=f"seconds between the worker's heartbeats (default {defaults.heartbeat_interval:g})",
    )
    run.add_argument(
        "--heartbeat-timeout",
        metavar="S",
        help="seconds without a heartbeat before a worker's jobs are lost "
        f"(default {defaults.heartbeat_timeout:g})",
    )
    run.add_argument(
        "--grace-period",
        metavar="S",
        help=f"seconds running jobs get to finish on shutdown (default {defaults.grace_period:g})",
    )
    run.add_argument(
        "--poll-interval",
        metavar="S",
        help="seconds between looks for ready jobs when no notification comes "
        f"(default {defaults.poll_interval:g})",
    )


def _add_enqueue(sub: Any) -> None:
    enqueue = sub.add_parser("enqueue", help="enqueue a job by name")
    add_common_options(enqueue)
    enqueue.add_argument("job", help="registry name (module.Class) or alias")
    enqueue.add_argument(
        "--args",
        default="[]",
        help="JSON list of positional arguments, converted to the job's annotated types "
        'where nothing is lost ("7.00" to Decimal) (default [])',
    )
    enqueue.add_argument(
        "--kwargs", default="{}", help="JSON object of keyword arguments (default {})"
    )
    enqueue.add_argument("--queue", help="queue to put it on (default: the job's own)")
    enqueue.add_argument(
        "--delay",
        type=finite_float,
        metavar="SECONDS",
        help="run it SECONDS from now (default 0: at once)",
    )
    enqueue.add_argument(
        "--priority",
        type=int_between(INT_MIN, INT_MAX),
        help="higher runs first (default: the job's own, 0 unless it says)",
    )
    enqueue.add_argument(
        "--retries",
        type=int_between(0, INT_MAX - 1),
        help="attempts after the first one that fails (default: the job's own, 0 unless it says)",
    )
    enqueue.add_argument(
        "--unique-key",
        help="at most one job of this name per key within --unique-until (default: none)",
    )
    enqueue.add_argument(
        "--unique-until",
        metavar="POLICY",
        help="how long the key holds: 'started', 'finished' or a period after the end such as "
        "'10m' (default: the job's own, 'finished' unless it says)",
    )
    enqueue.add_argument(
        "--on-conflict",
        choices=[c.value for c in uniqueness.OnConflict],
        help="when the key is held: return that job (keep), give it these arguments and run "
        "time if it waits (replace), or fail (raise) (default: the job's own, keep unless it says)",
    )
    enqueue.add_argument(
        "--timeout",
        type=finite_float,
        metavar="SECONDS",
        help="an attempt running longer times out (default: the job's own, none unless it says)",
    )


def _add_jobs(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="list, show, retry, cancel or delete jobs")
    jobs_sub = jobs.add_subparsers(dest="action", required=True, parser_class=Parser)
    jl = jobs_sub.add_parser("list", help="newest first")
    add_common_options(jl)
    jl.add_argument(
        "--state",
        action="append",
        default=[],
        choices=[s.value for s in JobState],
        help="only jobs in this state (repeatable; default: any state)",
    )
    jl.add_argument(
        "--queue",
        action="append",
        default=[],
        help="only jobs on this queue (repeatable; default: any queue)",
    )
    jl.add_argument(
        "--job",
        action="append",
        default=[],
        help="only jobs of this name: full name, alias or unique end of a name such as "
        "ChargeCard (repeatable; default: any job)",
    )
    jl.add_argument("--search", default="", help="id, unique key or name fragment (default: none)")
    jl.add_argument(
        "--limit", type=int_between(1, 100_000), default=50, help="at most this many (default 50)"
    )
    jl.add_argument(
        "--before-id",
        type=job_id,
        help="page: jobs with ids below this (default: from the newest)",
    )
    for action in ("show", "retry", "cancel", "delete"):
        p = jobs_sub.add_parser(action, help=f"{action} one job")
        add_common_options(p)
        p.add_argument("id", type=job_id, help="the job's id")


# -- commands -------------------------------------------------------------------------------


def _add_django_option(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--django-settings",
        metavar="MODULE",
        help="run Django tasks (corequeue.contrib.django): set Django up with this settings "
        "module, here and in each child, before any task runs (default: none)",
    )


def with_django(settings: Settings, settings_module: str) -> Settings:
    """``settings`` that import corequeue.contrib.django first: with COREQUEUE_DJANGO_SETTINGS
    set (the children inherit it), importing it sets Django up, here and in each child, before
    the other imports and any task."""
    import dataclasses

    os.environ["COREQUEUE_DJANGO_SETTINGS"] = settings_module
    import_modules(["corequeue.contrib.django"])
    imports = ("corequeue.contrib.django", *settings.imports)
    return dataclasses.replace(settings, imports=imports)


def cmd_run(args: argparse.Namespace) -> int:
    from corequeue.executor import server as fork_server
    from corequeue.worker import Worker, tune_gc, worker_store  # only the worker needs it

    settings = settings_from(
        args,
        queues=args.queues,
        max_processes=args.max_processes,
        max_jobs_per_process=args.max_jobs_per_process,
        max_pending_per_process=args.max_pending_per_process,
        concurrency=args.concurrency,
        threads=args.threads,
        stats_every=args.stats_every,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        grace_period=args.grace_period,
        poll_interval=args.poll_interval,
        synchronous_commit=args.synchronous_commit,
    )
    check_max_processes(settings, force=args.force)
    if args.django_settings:
        settings = with_django(settings, args.django_settings)
    # Started already by corequeue.cli unless it could not tell the imports from the flags.
    fork_server.start_early(settings.imports, settings.database_url)
    import_modules(settings.imports)
    registry.limit_imports(settings.imports)  # a job row names no other module to import
    build_chain(settings.middleware)  # a bad middleware path fails here, not in each child
    hooks.load(settings.hooks)  # job_failed and job_lost fire in this process
    open_store(settings)  # for what the worker's own process enqueues
    store = worker_store(settings)
    where = settings.config_file or "configuration"
    services: list[Any] = [*scheduler.worker_services(store, settings)]
    services += flow.worker_services(store, settings.queue, source=where)
    worker = Worker(store, settings, burst=args.burst, services=services)
    if args.health_port is None:
        tune_gc()
        return worker.run()
    from corequeue.worker.health import serve_health

    server, probe = serve_health(
        worker,
        settings.database_url,
        host=args.health_host,
        port=args.health_port,
        poll_interval=settings.poll_interval,
    )
    tune_gc()
    try:
        return worker.run()
    finally:
        server.stop()
        probe.dispose()


def cmd_enqueue(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    import_modules(settings.imports)
    try:
        job_args = json.loads(args.args)
        job_kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--args/--kwargs must be JSON: {exc}") from None
    if not isinstance(job_args, list) or not isinstance(job_kwargs, dict):
        raise ConfigError("--args must be a JSON list and --kwargs a JSON object")
    cls = registry.resolve(args.job)
    try:
        job = cls(*job_args, **job_kwargs)
    except TypeError as exc:
        raise ConfigError(f"--args/--kwargs do not fit {registry.job_name(cls)}: {exc}") from None
    open_store(settings)
    options = EnqueueOptions(
        args.queue,
        args.delay,
        args.priority,
        args.retries,
        args.unique_key,
        args.timeout,
        unique_until=args.unique_until,
        on_conflict=args.on_conflict,
    )
    (handle,) = enqueue([job], options, source="corequeue enqueue (command line)")
    name = registry.job_name(cls)
    text = f"enqueued job {handle.id} ({name})"
    if handle.deduplicated:
        text = f"job {handle.id} ({name}) holds its unique key: no job was added"
    emit(args, {"id": handle.id, "deduplicated": handle.deduplicated}, text)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    store = open_store(settings_from(args))
    store.check_schema()
    counts = store.job_count_many()
    workers = store.worker_list()
    by_queue: dict[str, dict[str, int]] = {}
    for queue, state, n in counts:
        row = by_queue.setdefault(queue, {s.value: 0 for s in JobState})
        row[state.value] = row.get(state.value, 0) + n  # (unknown states add a column)
    states = [s.value for s in JobState]
    states += sorted({k for q in by_queue.values() for k in q} - set(states))
    totals = {s: sum(q.get(s, 0) for q in by_queue.values()) for s in states}
    data = {
        "queues": by_queue,
        "totals": totals,
        "workers": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "queues": w.queues,
                "last_beat_at": w.last_beat_at.isoformat(),
                "stats": w.stats,
            }
            for w in workers
        ],
    }
    width = max([len("queue"), len("TOTAL"), *(len(q) for q in by_queue)])
    lines = ["queue".ljust(width) + "".join(s.rjust(11) for s in states)]
    for queue, row in sorted(by_queue.items()):
        lines.append(
            one_line(queue).ljust(width) + "".join(str(row.get(s, 0)).rjust(11) for s in states)
        )
    lines.append("TOTAL".ljust(width) + "".join(str(totals[s]).rjust(11) for s in states))
    lines.append(f"\n{len(workers)} live worker(s)")
    for w in workers:
        degraded = " (LISTEN degraded: polling)" if w.stats.get("degraded") else ""
        lines.append(
            f"  {w.id} {w.host} pid={w.pid} queues={','.join(w.queues) or '*'} "
            f"running={w.stats.get('running', 0)} succeeded={w.stats.get('succeeded', 0)} "
            f"last beat {w.last_beat_at:%H:%M:%S}{degraded}"
        )
    emit(args, data, "\n".join(lines))
    return 0


_JOB_HEADER = f"{'id':>8}  {'state':<10} {'queue':<10} name  attempts, run at, last error"


def _job_line(job: JobRecord) -> str:
    return (
        f"{job.id:>8}  {job.state.value:<10} {one_line(job.queue):<10} {one_line(job.name)}  "
        f"attempts={job.attempts}/{job.max_attempts} run_at={job.run_at:%Y-%m-%d %H:%M:%S}"
        + (
            f"  error={one_line(job.error)}"
            if job.error and job.state is not JobState.SUCCEEDED
            else ""
        )
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    import_modules(settings.imports)  # their aliases and signatures name jobs and parameters
    store = open_store(settings)
    store.check_schema()
    now = datetime.now(UTC)
    if args.action == "list":
        found = store.job_list(
            JobFilter(
                states=tuple(JobState(s) for s in args.state),
                queues=tuple(args.queue),
                names=jobtext.job_names(args.job),
                search=args.search,
            ),
            limit=args.limit,
            before_id=args.before_id,
        )
        text = "\n".join([_JOB_HEADER, *(_job_line(j) for j in found)]) if found else "no jobs"
        emit(args, [jobtext.job_json(j) for j in found], text)
        return 0
    if args.action == "show":
        job = store.job_get(args.id)
        if job is None:
            raise JobNotFound(missing_job(args.id))
        attempts = store.attempt_list(args.id)
        data = jobtext.job_json(job) | {"attempts_detail": [a.as_dict() for a in attempts]}
        lines = [f"{k}: {one_line(str(v))}" for k, v in job.as_dict().items()]
        if job.result is not None:
            lines.append(f"result (decoded): {decode_value(job.result)!r}")
        for a in attempts:
            lines.append(
                f"attempt {a.attempt}: {a.outcome.value} at {a.finished_at:%Y-%m-%d %H:%M:%S}"
                + (f" (rule: {one_line(a.rule)})" if a.rule else "")
                + (one_line(f" {a.error_type}: {a.error_message}") if a.error_type else "")
            )
            if a.traceback:
                lines.append(a.traceback.rstrip())
        emit(args, data, "\n".join(lines))
    # The store's refusals (InvalidTransition, JobNotFound, UniqueViolation) are worded for
    # people already (corequeue.core.display.refusal): main() prints them as they are.
    elif args.action == "retry":
        job = store.job_retry(args.id, now=now)
        emit(args, job.as_dict(), f"job {job.id} is {job.state.value} again")
    elif args.action == "cancel":
        job = store.job_cancel(args.id, now=now)
        emit(args, job.as_dict(), f"job {job.id} cancelled")
    elif args.action == "delete":
        if not store.job_delete(args.id):
            raise JobNotFound(missing_job(args.id))
        emit(args, {"deleted": args.id}, f"job {args.id} deleted")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = open_store(settings)
    store.check_schema()
    older = (
        parse_duration(args.older_than, key="--older-than", source="command line")
        if args.older_than
        else settings.retention
    )
    deleted = store.job_prune_many(finished_before=datetime.now(UTC) - timedelta(seconds=older))
    emit(args, {"deleted": deleted}, f"deleted {deleted} finished job(s) older than {older:g}s")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    store = open_store(settings_from(args))
    before, after = store.migrate()
    where = store.url.render_as_string(hide_password=True)
    if before is None:
        text = f"created the corequeue tables (schema version {after}) in {where}"
    elif before == after:
        text = f"the corequeue tables in {where} are up to date (schema version {after})"
    else:
        text = f"upgraded the corequeue tables in {where} from version {before} to {after}"
    emit(args, {"before": before, "after": after}, text)
    return 0


COMMANDS = {
    "run": cmd_run,
    "enqueue": cmd_enqueue,
    "stats": cmd_stats,
    "jobs": cmd_jobs,
    "prune": cmd_prune,
    "migrate": cmd_migrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_format = getattr(args, "log_format", "text")
    configure_logging(args.log_level, buffered=args.command == "run", log_format=log_format)
    handler = COMMANDS.get(args.command) or args.handler
    try:
        code = int(handler(args))
        sys.stdout.flush()  # here, so that a closed pipe is seen here (see below)
        return code
    except CorequeueError as exc:
        print(f"corequeue: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`corequeue jobs list | head -1`): stop quietly, as a command
        # killed by SIGPIPE would, and keep Python from failing again when it flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
