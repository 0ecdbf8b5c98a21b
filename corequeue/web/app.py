"""The dashboard's routes: pages, actions, ``/metrics``.

Every endpoint goes through :meth:`Dashboard.endpoint`, which loads the session, checks
credentials, checks the CSRF token of every POST, refuses actions in read-only mode, and runs the
(synchronous, database-bound) handler in a worker thread. Templates autoescape everything.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from sqlalchemy.engine import URL, Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from corequeue import runtime as corequeue_app
from corequeue.core.errors import CorequeueError, InvalidTransition
from corequeue.core.states import JobState
from corequeue.store.monitoring import Monitor
from corequeue.store.queries import Store
from corequeue.store.records import JobFilter, JobRecord
from corequeue.web import metrics
from corequeue.web.chart import throughput_chart
from corequeue.web.security import SESSION_COOKIE, SESSION_MAX_AGE, Guard, Session, safe_next

try:  # written alongside the scheduler; the page works without it
    from corequeue.core import cron as _cron
except ImportError:  # pragma: no cover - depends on the installed version
    _cron = None  # type: ignore[assignment]

HERE = Path(__file__).parent
PAGE_SIZE = 50
ACTIONS = ("retry", "cancel", "delete")
#: States each action can apply to (a bulk action only touches these).
ACTION_STATES: dict[str, tuple[JobState, ...]] = {
    "retry": (JobState.FAILED, JobState.CANCELLED),
    "cancel": (JobState.REQUESTED, JobState.RUNNING),
    "delete": (JobState.REQUESTED, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED),
}
NOTICES = {
    "retried": "Job sent back to wait; it runs again shortly.",
    "cancelled": "Job cancelled.",
    "deleted": "Job deleted.",
    "bulk": "Bulk action done.",
}

Handler = Callable[["Dashboard", Request, "Context"], Response]


@dataclass
class Context:
    """What a handler knows about the request beyond the request itself."""

    session: Session
    form: FormData | None = None
    extra_cookies: list[tuple[str, str, int]] = field(default_factory=list)
    clear_cookie: bool = False


class Dashboard:
    """The dashboard's state: store, guard and templates; its methods are the pages."""

    def __init__(
        self,
        store: Store,
        *,
        token: str | None,
        read_only: bool,
        secret: str | bytes | None,
        heartbeat_timeout: float,
        refresh_seconds: float,
    ) -> None:
        self.store = store
        self.monitor = Monitor(store)
        self.guard = Guard(token, secret)
        self.read_only = read_only
        self.heartbeat_timeout = heartbeat_timeout
        self.refresh_seconds = refresh_seconds
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(ts=format_ts, secs=format_seconds, pretty=pretty_json)
        env.globals.update(states=list(JobState), action_states=ACTION_STATES)
        self.templates = Jinja2Templates(env=env)
        self._options_cache: tuple[float, tuple[list[str], list[str]]] = (-1e9, ([], []))

    # -- plumbing -------------------------------------------------------------------------

    def endpoint(
        self, handler: Handler, *, action: bool = False, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            now = int(time.time())
            cookie = request.cookies.get(SESSION_COOKIE)
            session = self.guard.load_session(cookie, now=now)
            if session is None:
                session = self.guard.new_session(authenticated=False, now=now)
            ctx = Context(session)
            if not public and not self.guard.allows(session, request.headers.get("authorization")):
                response = self._unauthorized(request, ctx)
            elif request.method == "POST":
                ctx.form = await request.form()
                candidate = request.headers.get("x-csrf-token") or _field(ctx.form, "csrf")
                if not self.guard.csrf_valid(session, candidate):
                    response = self.error(
                        request,
                        ctx,
                        403,
                        "Invalid or missing CSRF token",
                        "This form has expired or did not come from this dashboard. "
                        "Go back, reload the page and try again.",
                    )
                elif action and self.read_only:
                    response = self.error(
                        request,
                        ctx,
                        403,
                        "Read-only dashboard",
                        "This dashboard was started with --read-only: actions are disabled.",
                    )
                else:
                    response = await run_in_threadpool(handler, self, request, ctx)
            else:
                response = await run_in_threadpool(handler, self, request, ctx)
            self._cookies(request, ctx, response)
            return response

        return run

    def _cookies(self, request: Request, ctx: Context, response: Response) -> None:
        path = request.scope.get("root_path", "") or "/"
        secure = request.url.scheme == "https"
        if ctx.clear_cookie:
            response.delete_cookie(SESSION_COOKIE, path=path)
        elif ctx.session.is_new:
            response.set_cookie(
                SESSION_COOKIE,
                self.guard.dump_session(ctx.session),
                max_age=SESSION_MAX_AGE,
                path=path,
                httponly=True,
                samesite="lax",
                secure=secure,
            )
        response.headers.setdefault("Cache-Control", "no-store")

    def _unauthorized(self, request: Request, ctx: Context) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="corequeue"'}
        if request.url.path.endswith("/metrics") or "/api/" in request.url.path:
            return PlainTextResponse(
                "401 Unauthorized: send Authorization: Bearer TOKEN\n", 401, headers
            )
        return self.render(
            request,
            ctx,
            "login.html",
            {"error": None, "next": _here(request), "hide_nav": True},
            status=401,
            headers=headers,
        )

    def base_url(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def render(
        self,
        request: Request,
        ctx: Context,
        template: str,
        data: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        root = self.base_url(request)
        context = {
            "request": request,
            "root": root,
            "csrf": self.guard.csrf_token(ctx.session),
            "read_only": self.read_only,
            "auth_required": self.guard.auth_required,
            "logged_in": ctx.session.authenticated,
            "now": datetime.now(UTC),
            "notice": NOTICES.get(request.query_params.get("notice", "")),
            "nav": _nav_key(request.url.path[len(root) :] or "/"),
            **data,
        }
        return self.templates.TemplateResponse(
            request, template, context, status_code=status, headers=dict(headers or {})
        )

    def error(
        self, request: Request, ctx: Context, status: int, title: str, message: str
    ) -> Response:
        return self.render(
            request, ctx, "error.html", {"title": title, "message": message}, status=status
        )

    def redirect(self, request: Request, path: str, **query: str) -> Response:
        target = self.base_url(request) + path
        if query:
            target += "?" + urlencode(query)
        return RedirectResponse(target, status_code=303)

    # -- overview -------------------------------------------------------------------------

    def overview_data(self, now: datetime) -> dict[str, Any]:
        stats = self.monitor.queue_stats(now=now)
        buckets = self.monitor.throughput(now=now, minutes=60)
        return {
            "queues": stats,
            "totals": self.monitor.state_totals(stats),
            "chart": throughput_chart(buckets),
            "buckets": buckets,
            "timings": self.monitor.timings(now=now, window=timedelta(hours=1)),
            "workers": self.monitor.worker_statuses(
                now=now, heartbeat_timeout=self.heartbeat_timeout
            ),
            "generated_at": now,
        }

    def page_overview(self, request: Request, ctx: Context) -> Response:
        data = self.overview_data(datetime.now(UTC))
        data["refresh_seconds"] = self.refresh_seconds
        template = (
            "_overview_body.html" if request.query_params.get("fragment") else "overview.html"
        )
        return self.render(request, ctx, template, data)

    def api_overview(self, request: Request, ctx: Context) -> Response:
        now = datetime.now(UTC)
        data = self.overview_data(now)
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

    # -- history --------------------------------------------------------------------------

    def filter_options(self) -> tuple[list[str], list[str]]:
        """Queue and job names for the filter form; cached for 30 s (they scan the table)."""
        at, options = self._options_cache
        if time.monotonic() - at > 30:
            queues = sorted({q for q, _, _ in self.store.job_count_many()})
            options = (queues, self.monitor.distinct_names())
            self._options_cache = (time.monotonic(), options)
        return options

    def page_jobs(self, request: Request, ctx: Context) -> Response:
        params = request.query_params
        filt, form, problems = parse_filter(params)
        before = _int(params.get("before"))
        after = _int(params.get("after"))
        if after is not None and before is None:
            page = self.monitor.job_list_after(filt, after_id=after, limit=PAGE_SIZE + 1)
            has_newer = len(page) > PAGE_SIZE
            page = page[-PAGE_SIZE:] if has_newer else page
            older = self.store.job_list(filt, limit=1, before_id=page[-1].id) if page else []
            has_older = bool(older)
        else:
            page = self.store.job_list(filt, limit=PAGE_SIZE + 1, before_id=before)
            has_older = len(page) > PAGE_SIZE
            page = page[:PAGE_SIZE]
            has_newer = before is not None
        query = {k: v for k, v in form.items() if v and k != "state"}
        links = {
            "newer": _qs(form, after=str(page[0].id)) if has_newer and page else None,
            "older": _qs(form, before=str(page[-1].id)) if has_older and page else None,
            "first": _qs(form) if has_newer else None,
        }
        queues, names = self.filter_options()
        return self.render(
            request,
            ctx,
            "jobs.html",
            {
                "jobs": page,
                "form": form,
                "query": query,
                "links": links,
                "problems": problems,
                "queues": queues,
                "names": names,
                "filtered": bool(query) or bool(filt.states),
            },
        )

    def page_job(self, request: Request, ctx: Context) -> Response:
        job_id = int(request.path_params["job_id"])
        job = self.store.job_get(job_id)
        if job is None:
            return self.error(
                request,
                ctx,
                404,
                "No such job",
                f"There is no job with id {job_id}; it may have been deleted or pruned.",
            )
        return self.render(
            request,
            ctx,
            "job.html",
            {"job": job, "attempts": self.store.attempt_list(job_id), "actions": job_actions(job)},
        )

    # -- actions --------------------------------------------------------------------------

    def act_job(self, request: Request, ctx: Context) -> Response:
        job_id = int(request.path_params["job_id"])
        action = str(request.path_params["action"])
        assert ctx.form is not None
        if action not in ACTIONS:
            return self.error(
                request, ctx, 404, "No such action", "Jobs can be retried, cancelled or deleted."
            )
        job = self.store.job_get(job_id)
        if job is None:
            return self.error(
                request, ctx, 404, "No such job", f"There is no job with id {job_id}."
            )
        if _field(ctx.form, "confirm") != "yes":
            return self.render(
                request,
                ctx,
                "confirm.html",
                {
                    "action": action,
                    "job": job,
                    "count": 1,
                    "target": f"/jobs/{job_id}/{action}",
                    "fields": {},
                    "bulk_states": [],
                },
            )
        now = datetime.now(UTC)
        try:
            if action == "retry":
                self.store.job_retry(job_id, now=now)
                notice = "retried"
            elif action == "cancel":
                self.store.job_cancel(job_id, now=now)
                notice = "cancelled"
            else:
                self.store.job_delete(job_id)
                return self.redirect(request, "/jobs", notice="deleted")
        except KeyError:
            return self.error(
                request, ctx, 404, "No such job", f"There is no job with id {job_id}."
            )
        except InvalidTransition as exc:
            return self.error(request, ctx, 409, f"Cannot {action} job {job_id}", str(exc))
        return self.redirect(request, f"/jobs/{job_id}", notice=notice)

    def act_bulk(self, request: Request, ctx: Context) -> Response:
        assert ctx.form is not None
        action = _field(ctx.form, "action")
        if action not in ACTIONS:
            return self.error(
                request, ctx, 400, "Unknown action", "Choose retry, cancel or delete."
            )
        filt, form, problems = parse_filter(ctx.form)
        if problems:
            return self.error(request, ctx, 400, "Invalid filter", "; ".join(problems))
        allowed = ACTION_STATES[action]
        states = tuple(s for s in (filt.states or allowed) if s in allowed)
        target = replace(filt, states=states)
        if _field(ctx.form, "confirm") != "yes":
            count = self.monitor.job_count(target) if states else 0
            fields = {k: v for k, v in form.items() if v and k != "state"}
            return self.render(
                request,
                ctx,
                "confirm.html",
                {
                    "action": action,
                    "job": None,
                    "count": count,
                    "target": "/jobs/bulk",
                    "fields": {**fields, "action": action},
                    "bulk_states": [s.value for s in filt.states],
                    "applies_to": states,
                },
            )
        done = skipped = 0
        now = datetime.now(UTC)
        if states:
            for ids in self.monitor.job_ids(target):
                for job_id in ids:
                    try:
                        if action == "retry":
                            self.store.job_retry(job_id, now=now)
                        elif action == "cancel":
                            self.store.job_cancel(job_id, now=now)
                        elif not self.store.job_delete(job_id):
                            skipped += 1
                            continue
                        done += 1
                    except (KeyError, InvalidTransition):
                        skipped += 1
        return self.render(
            request,
            ctx,
            "bulk_done.html",
            {"action": action, "done": done, "skipped": skipped, "back": _qs(form)},
        )

    # -- schedules, workers, metrics --------------------------------------------------------

    def page_schedules(self, request: Request, ctx: Context) -> Response:
        now = datetime.now(UTC)
        rows = []
        for row in self.monitor.schedule_rows():
            next_run, problem = next_run_of(row.name, row.expression, row.timezone, now)
            rows.append({"row": row, "next_run": next_run, "problem": problem})
        delayed, delayed_total = self.monitor.delayed_jobs(now=now, limit=100)
        return self.render(
            request,
            ctx,
            "schedules.html",
            {
                "schedules": rows,
                "delayed": delayed,
                "delayed_total": delayed_total,
                "cron_available": _cron is not None,
            },
        )

    def page_workers(self, request: Request, ctx: Context) -> Response:
        now = datetime.now(UTC)
        return self.render(
            request,
            ctx,
            "workers.html",
            {
                "workers": self.monitor.worker_statuses(
                    now=now, heartbeat_timeout=self.heartbeat_timeout
                ),
                "heartbeat_timeout": self.heartbeat_timeout,
            },
        )

    def page_metrics(self, request: Request, ctx: Context) -> Response:
        text = metrics.render_metrics(
            self.monitor,
            now=datetime.now(UTC),
            heartbeat_timeout=self.heartbeat_timeout,
            window=timedelta(minutes=15),
        )
        return Response(text, media_type=metrics.CONTENT_TYPE)

    # -- login ----------------------------------------------------------------------------

    def page_login(self, request: Request, ctx: Context) -> Response:
        if not self.guard.auth_required or ctx.session.authenticated:
            return self.redirect(request, "/")
        return self.render(
            request,
            ctx,
            "login.html",
            {"error": None, "next": request.query_params.get("next", ""), "hide_nav": True},
        )

    def do_login(self, request: Request, ctx: Context) -> Response:
        assert ctx.form is not None
        root = self.base_url(request)
        target = safe_next(_field(ctx.form, "next"), root)
        if not self.guard.auth_required:
            return RedirectResponse(target, status_code=303)
        if not self.guard.token_matches(_field(ctx.form, "token")):
            return self.render(
                request,
                ctx,
                "login.html",
                {
                    "error": "That token is not right.",
                    "next": _field(ctx.form, "next") or "",
                    "hide_nav": True,
                },
                status=401,
            )
        ctx.session = self.guard.new_session(authenticated=True, now=int(time.time()))
        return RedirectResponse(target, status_code=303)

    def do_logout(self, request: Request, ctx: Context) -> Response:
        ctx.clear_cookie = True
        return self.redirect(request, "/login" if self.guard.auth_required else "/")


# -- helpers used by the pages ---------------------------------------------------------------


def job_actions(job: JobRecord) -> list[str]:
    """The actions that make sense for ``job`` in its state."""
    return [a for a in ACTIONS if job.state in ACTION_STATES[a]]


def next_run_of(
    name: str, expression: str, timezone: str, now: datetime
) -> tuple[datetime | None, str | None]:
    """(next occurrence after ``now``, or why there is none)."""
    if _cron is None:
        return None, None
    try:
        schedule = _cron.parse_schedule(name, expression, timezone, "skip")
        return _cron.next_occurrence(schedule, now), None
    except (CorequeueError, ValueError) as exc:
        return None, str(exc)


def parse_filter(params: Any) -> tuple[JobFilter, dict[str, Any], list[str]]:
    """A JobFilter from query or form fields ``state`` (repeatable), ``queue``, ``job``, ``q``,
    ``from``, ``to`` (UTC). Returns (filter, the fields as given, problems to show)."""
    problems: list[str] = []
    states = []
    for value in params.getlist("state"):
        if value:
            try:
                states.append(JobState(value))
            except ValueError:
                problems.append(f"unknown state {value!r}")
    form: dict[str, Any] = {"state": [s.value for s in states]}
    for key in ("queue", "job", "q", "from", "to"):
        form[key] = str(params.get(key) or "").strip()
    created_after = _parse_time(form["from"], "from", problems)
    created_before = _parse_time(form["to"], "to", problems)
    filt = JobFilter(
        states=tuple(states),
        queues=(form["queue"],) if form["queue"] else (),
        names=(form["job"],) if form["job"] else (),
        search=form["q"],
        created_after=created_after,
        created_before=created_before,
    )
    return filt, form, problems


def _parse_time(text: str, name: str, problems: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} = {text!r} is not a date and time (use 2024-05-01T12:00)")
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _qs(form: Mapping[str, Any], **extra: str) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in form.items():
        if isinstance(value, list):
            pairs.extend((key, v) for v in value)
        elif value:
            pairs.append((key, str(value)))
    pairs.extend(extra.items())
    return "?" + urlencode(pairs) if pairs else "?"


def _field(form: FormData | None, name: str) -> str | None:
    if form is None:
        return None
    value = form.get(name)
    return value if isinstance(value, str) else None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _here(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def _nav_key(path: str) -> str:
    for key in ("jobs", "schedules", "workers"):
        if path.startswith("/" + key):
            return key
    return "overview"


def _dist(d: Any) -> dict[str, Any]:
    return {"count": d.count, "p50": d.p50, "p90": d.p90, "p99": d.p99, "max": d.max}


def format_ts(value: datetime | None, with_seconds: bool = True) -> str:
    if value is None:
        return "—"
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M")


def format_seconds(value: float | None) -> str:
    """Short human duration: 850 ms, 12.3 s, 4 min 10 s, 3 h 5 min, 2 d 4 h."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def pretty_json(text: str | None) -> str:
    """Stored JSON, indented for reading (as-is when it is not JSON)."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return text


def _resolve_store(database: Store | str | URL | Engine | None) -> Store:
    if database is None:
        return corequeue_app.get_store()
    if isinstance(database, Store):
        return database
    if isinstance(database, Engine):
        return Store(database)
    return Store.from_url(database)


class SecurityHeaders:
    """Adds a strict Content-Security-Policy and friends to every response."""

    HEADERS = [
        (
            b"content-security-policy",
            b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                names = {k.lower() for k, _ in message["headers"]}
                message["headers"] = list(message["headers"]) + [
                    (k, v) for k, v in self.HEADERS if k not in names
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(
    database: Store | str | URL | Engine | None,
    *,
    token: str | None,
    read_only: bool,
    secret: str | bytes | None,
    heartbeat_timeout: float,
    refresh_seconds: float,
) -> Starlette:
    """See :func:`corequeue.web.create_app`."""
    from starlette.middleware import Middleware

    store = _resolve_store(database)
    owned = isinstance(database, str | URL)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:  # an engine this app made from a URL: close its connections
                store.dispose()

    dash = Dashboard(
        store,
        token=token,
        read_only=read_only,
        secret=secret,
        heartbeat_timeout=heartbeat_timeout,
        refresh_seconds=refresh_seconds,
    )
    e = dash.endpoint
    routes: list[BaseRoute] = [
        Route("/", e(Dashboard.page_overview), name="overview"),
        Route("/api/overview", e(Dashboard.api_overview), name="api_overview"),
        Route("/jobs", e(Dashboard.page_jobs), name="jobs"),
        Route("/jobs/bulk", e(Dashboard.act_bulk, action=True), methods=["POST"], name="bulk"),
        Route("/jobs/{job_id:int}", e(Dashboard.page_job), name="job"),
        Route(
            "/jobs/{job_id:int}/{action:str}",
            e(Dashboard.act_job, action=True),
            methods=["POST"],
            name="job_action",
        ),
        Route("/schedules", e(Dashboard.page_schedules), name="schedules"),
        Route("/workers", e(Dashboard.page_workers), name="workers"),
        Route("/metrics", e(Dashboard.page_metrics), name="metrics"),
        Route("/login", e(Dashboard.page_login, public=True), name="login"),
        Route("/login", e(Dashboard.do_login, public=True), methods=["POST"], name="do_login"),
        Route("/logout", e(Dashboard.do_logout, public=True), methods=["POST"], name="logout"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    application = Starlette(
        routes=routes, middleware=[Middleware(SecurityHeaders)], lifespan=lifespan
    )
    application.state.dashboard = dash
    return application
