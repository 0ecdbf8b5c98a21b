"""The dashboard's pages: overview (and its JSON), job history, one job, schedules, workers and
``/metrics``. Each is a handler of ``(dashboard, request, context)`` that only reads."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from corequeue import registry
from corequeue.core import cron
from corequeue.core.display import named_params
from corequeue.core.errors import CorequeueError
from corequeue.store.records import JobFilter
from corequeue.web import metrics
from corequeue.web.actions import job_actions
from corequeue.web.chart import throughput_chart
from corequeue.web.dashboard import Context, Dashboard
from corequeue.web.history import history_page
from corequeue.web.query import cursor, job_id_of, parse_filter, query_string


def overview_data(dash: Dashboard, now: datetime) -> dict[str, Any]:
    """What the overview shows: queues, totals, the last hour's throughput, timings, workers."""
    stats = dash.monitor.queue_stats(now=now)
    buckets = dash.monitor.throughput(now=now, minutes=60)
    return {
        "queues": stats,
        "totals": dash.monitor.state_totals(stats),
        "chart": throughput_chart(buckets),
        "buckets": buckets,
        "timings": dash.monitor.timings(now=now, window=timedelta(hours=1)),
        "workers": dash.monitor.worker_statuses(now=now, heartbeat_timeout=dash.heartbeat_timeout),
        "generated_at": now,
        "flow": dash.store.queue_states(),
    }


def page_overview(dash: Dashboard, request: Request, ctx: Context) -> Response:
    data = overview_data(dash, datetime.now(UTC))
    data["refresh_seconds"] = dash.refresh_seconds
    template = "_overview_body.html" if request.query_params.get("fragment") else "overview.html"
    return dash.render(request, ctx, template, data)


def api_overview(dash: Dashboard, request: Request, ctx: Context) -> Response:
    now = datetime.now(UTC)
    data = overview_data(dash, now)
    return JSONResponse(
        {
            "generated_at": now.isoformat(),
            "totals": {s.value: n for s, n in data["totals"].items()},
            "queues": [
                {
                    "queue": q.queue,
                    "counts": {s.value: n for s, n in q.counts.items()},
                    "ready": q.ready,
                    "scheduled": q.scheduled,
                    "oldest_wait_seconds": q.oldest_wait(now),
                    "estimated": ["succeeded"] if q.estimated else [],
                }
                for q in data["queues"]
            ],
            "throughput": [
                {
                    "minute": b.start.isoformat(),
                    "succeeded": b.succeeded,
                    "failed": b.failed,
                    "cancelled": b.cancelled,
                }
                for b in data["buckets"]
            ],
            "pickup_latency": _dist(data["timings"].latency),
            "duration": _dist(data["timings"].duration),
            "workers": [
                {
                    "id": s.worker.id,
                    "host": s.worker.host,
                    "pid": s.worker.pid,
                    "alive": s.alive,
                    "last_beat_at": s.worker.last_beat_at.isoformat(),
                    "running": [j.id for j in s.running],
                }
                for s in data["workers"]
            ],
        }
    )


def _dist(d: Any) -> dict[str, Any]:
    return {"count": d.count, "p50": d.p50, "p90": d.p90, "p99": d.p99, "max": d.max}


def page_jobs(dash: Dashboard, request: Request, ctx: Context) -> Response:
    params = request.query_params
    filt, form, problems = parse_filter(params)
    before = cursor(params, "before", problems)
    after = cursor(params, "after", problems)
    found = history_page(dash, filt, before, after)
    query = {k: v for k, v in form.items() if v and k != "state"}
    links = {
        "newer": query_string(form, after=str(found.newer)) if found.newer is not None else None,
        "older": query_string(form, before=str(found.older)) if found.older is not None else None,
        "first": query_string(form) if found.newer is not None else None,
    }
    queues, names = dash.filter_options()
    return dash.render(
        request,
        ctx,
        "jobs.html",
        {
            "jobs": found.jobs,
            "searched": found.searched,
            "form": form,
            "query": query,
            "links": links,
            "problems": problems,
            "queues": queues,
            "names": names,
            "filtered": bool(query) or bool(filt.states),
        },
        status=400 if problems else 200,
    )


def page_job(dash: Dashboard, request: Request, ctx: Context) -> Response:
    job_id = job_id_of(request.path_params["job_id"])
    job = dash.store.job_get(job_id) if job_id is not None else None
    if job_id is None or job is None:
        return dash.error(
            request,
            ctx,
            404,
            "No such job",
            f"There is no job with id {request.path_params['job_id']}; it may have been deleted "
            "or pruned.",
        )
    return dash.render(
        request,
        ctx,
        "job.html",
        {
            "job": job,
            "attempts": dash.store.attempt_list(job_id),
            "actions": job_actions(job),
            "named_params": named_params(job.params, arg_names_of(job.name)),
        },
    )


def arg_names_of(name: str) -> tuple[str, ...]:
    """The positional parameter names of the job class registered as ``name`` in this process
    (the dashboard imports the configured modules), () when none is: nothing is imported for
    a name read from a row."""
    cls = registry.registered().get(registry.canonical_name(name))
    if cls is None:
        return ()
    try:
        of = getattr(cls, "parameters_of", None)  # function jobs: the function's parameters
        func, skip_first = of() if of is not None else (cls.__init__, True)
        params = list(inspect.signature(func).parameters.values())[skip_first:]
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds)


def page_name(dash: Dashboard, request: Request, ctx: Context) -> Response:
    """One job name: duration percentiles, failure rate and throughput over 1 h, 24 h and 7 d,
    and its latest jobs."""
    name = request.path_params["name"]
    now = datetime.now(UTC)
    recent = dash.monitor.job_page(JobFilter(names=(name,)), limit=20)
    return dash.render(
        request,
        ctx,
        "name.html",
        {"name": name, "windows": dash.monitor.name_windows(name, now=now), "recent": recent},
    )


def page_schedules(dash: Dashboard, request: Request, ctx: Context) -> Response:
    now = datetime.now(UTC)
    rows = []
    for row in dash.monitor.schedule_rows():
        next_run, problem = next_run_of(row.name, row.expression, row.timezone, now)
        rows.append({"row": row, "next_run": next_run, "problem": problem})
    delayed, delayed_total = dash.monitor.delayed_jobs(now=now, limit=100)
    return dash.render(
        request,
        ctx,
        "schedules.html",
        {"schedules": rows, "delayed": delayed, "delayed_total": delayed_total},
    )


def next_run_of(
    name: str, expression: str, timezone: str, now: datetime
) -> tuple[datetime | None, str | None]:
    """(next occurrence after ``now``, or why there is none)."""
    try:
        schedule = cron.parse_schedule(name, expression, timezone, "skip")
        return cron.next_occurrence(schedule, now), None
    except (CorequeueError, ValueError) as exc:
        return None, str(exc)


def page_workers(dash: Dashboard, request: Request, ctx: Context) -> Response:
    now = datetime.now(UTC)
    return dash.render(
        request,
        ctx,
        "workers.html",
        {
            "workers": dash.monitor.worker_statuses(
                now=now, heartbeat_timeout=dash.heartbeat_timeout
            ),
            "heartbeat_timeout": dash.heartbeat_timeout,
        },
    )


def page_metrics(dash: Dashboard, request: Request, ctx: Context) -> Response:
    text = metrics.render_metrics(
        dash.monitor,
        now=datetime.now(UTC),
        heartbeat_timeout=dash.heartbeat_timeout,
        window=timedelta(minutes=15),
    )
    return Response(text, media_type=metrics.CONTENT_TYPE)
