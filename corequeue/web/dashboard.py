"""The dashboard's state and plumbing: what every page and action goes through.

:meth:`Dashboard.endpoint` wraps a handler: it loads the session, checks credentials, checks the
CSRF token of every POST, refuses actions in read-only mode, and runs the (synchronous,
database-bound) handler in a worker thread. Handlers are plain functions of ``(dashboard,
request, context)``, in :mod:`~corequeue.web.pages`, :mod:`~corequeue.web.actions` and
:mod:`~corequeue.web.login`. Templates autoescape everything.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from corequeue.store.monitoring import Monitor
from corequeue.store.queries import Store
from corequeue.web.query import BadRequest, form_field, read_form
from corequeue.web.security import SESSION_COOKIE, SESSION_MAX_AGE, Guard, Session, cross_site
from corequeue.web.templating import make_templates

NOTICES = {
    "retried": "Job sent back to wait; it runs again shortly.",
    "cancelled": "Job cancelled.",
    "deleted": "Job deleted.",
    "bulk": "Bulk action done.",
    "queue_paused": "Queue paused: its waiting jobs wait until it is resumed.",
    "queue_resumed": "Queue resumed.",
    "schedule_paused": "Schedule paused: it fires nothing until it is resumed.",
    "schedule_resumed": "Schedule resumed: its missed policy decides what the pause missed.",
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
    """The dashboard's state (store, guard, templates) and the responses every handler builds."""

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
        self.templates = make_templates()
        self._options_cache: tuple[float, tuple[list[str], list[str]]] = (-1e9, ([], []))

    def endpoint(
        self, handler: Handler, *, action: bool = False, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """The ASGI endpoint for ``handler``: ``action`` ones are refused in read-only mode,
        ``public`` ones need no credentials."""

        async def run(request: Request) -> Response:
            now = int(time.time())
            cookie = request.cookies.get(SESSION_COOKIE)
            session = self.guard.load_session(cookie, now=now)
            if session is None:
                session = self.guard.new_session(authenticated=False, now=now)
            ctx = Context(session)
            try:
                response = await self._respond(request, ctx, handler, action, public)
            except BadRequest as exc:
                response = self.error(request, ctx, exc.status, exc.title, exc.message)
            self._cookies(request, ctx, response)
            return response

        return run

    async def _respond(
        self, request: Request, ctx: Context, handler: Handler, action: bool, public: bool
    ) -> Response:
        if not public and not self._admits(request, ctx):
            return self._unauthorized(request, ctx)
        if request.method == "POST":
            if cross_site(request.headers):
                return self.error(
                    request,
                    ctx,
                    403,
                    "Cross-site request refused",
                    "This form was sent from another site. Open the dashboard and use its own "
                    "buttons.",
                )
            ctx.form = await read_form(request)
            refused = self._refused_post(request, ctx, action=action)
            if refused is not None:
                return refused
        return await run_in_threadpool(handler, self, request, ctx)

    def client_of(self, request: Request) -> str:
        return request.client.host if request.client else ""

    def _admits(self, request: Request, ctx: Context) -> bool:
        """Whether the request may see the dashboard; wrong credentials count against its
        client, and a locked-out client is refused (BadRequest 429)."""
        guard = self.guard
        if not guard.auth_required or ctx.session.authenticated:
            return True
        authorization = request.headers.get("authorization")
        if not authorization:
            return False
        client = self.client_of(request)
        self.check_lockout(client)
        if guard.header_credentials(authorization):
            guard.throttle.succeeded(client)
            return True
        guard.throttle.failed(client, time.monotonic())
        return False

    def check_lockout(self, client: str) -> None:
        """Raise BadRequest (429) while ``client`` is locked out after failed credentials."""
        wait = self.guard.throttle.locked_for(client, time.monotonic())
        if wait > 0:
            raise BadRequest(
                429,
                "Too many failed attempts",
                f"Wrong credentials were sent too often; try again in {int(wait) + 1} s.",
            )

    def _refused_post(self, request: Request, ctx: Context, *, action: bool) -> Response | None:
        """The error page for a POST without a valid CSRF token, or an action in read-only mode;
        None when the POST may go ahead."""
        candidate = request.headers.get("x-csrf-token") or form_field(ctx.form, "csrf")
        if not self.guard.csrf_valid(ctx.session, candidate):
            return self.error(
                request,
                ctx,
                403,
                "Invalid or missing CSRF token",
                "This form has expired or did not come from this dashboard. "
                "Go back, reload the page and try again.",
            )
        if action and self.read_only:
            return self.error(
                request,
                ctx,
                403,
                "Read-only dashboard",
                "This dashboard was started with --read-only: actions are disabled.",
            )
        return None

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
        """``template`` with ``data`` and what every page shows (root, CSRF token, login
        state, the notice named by ``?notice=``, the navigation entry)."""
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

    def filter_options(self) -> tuple[list[str], list[str]]:
        """Queue and job names for the filter form; cached for 30 s (they scan the table)."""
        at, options = self._options_cache
        if time.monotonic() - at > 30:
            options = (self.monitor.queue_names(), self.monitor.distinct_names())
            self._options_cache = (time.monotonic(), options)
        return options


def _here(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def _nav_key(path: str) -> str:
    for key in ("jobs", "schedules", "workers"):
        if path.startswith("/" + key):
            return key
    return "overview"
