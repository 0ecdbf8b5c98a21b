"""The dashboard's ASGI application: its routes, its store, and its security headers.

The pages are in :mod:`~corequeue.web.pages`, the actions on jobs in
:mod:`~corequeue.web.actions`, login and logout in :mod:`~corequeue.web.login`; every route goes
through :meth:`corequeue.web.dashboard.Dashboard.endpoint`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from sqlalchemy.engine import URL, Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from corequeue import runtime
from corequeue.store.queries import Store
from corequeue.web import actions, flow, login, pages
from corequeue.web.dashboard import Dashboard
from corequeue.web.security import LOCAL_HOSTS, SecurityHeaders, TrustedHosts, host_of
from corequeue.web.templating import STATIC


def build_app(
    database: Store | str | URL | Engine | None,
    *,
    token: str | None,
    read_only: bool,
    secret: str | bytes | None,
    heartbeat_timeout: float,
    refresh_seconds: float,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """See :func:`corequeue.web.create_app`."""
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
    hosts: frozenset[str] | None = None  # with a token, any host name may be used
    if token is None or allowed_hosts is not None:
        hosts = LOCAL_HOSTS | {host_of(h) for h in allowed_hosts or ()}
    application = Starlette(
        routes=_routes(dash),
        middleware=[Middleware(SecurityHeaders), Middleware(TrustedHosts, allowed=hosts)],
        exception_handlers={Exception: server_error},
        lifespan=lifespan,
    )
    application.state.dashboard = dash
    return application


def _routes(dash: Dashboard) -> list[BaseRoute]:
    e = dash.endpoint
    return [
        Route("/", e(pages.page_overview), name="overview"),
        Route("/api/overview", e(pages.api_overview), name="api_overview"),
        Route("/jobs", e(pages.page_jobs), name="jobs"),
        Route("/jobs/bulk", e(actions.act_bulk, action=True), methods=["POST"], name="bulk"),
        Route("/jobs/{job_id:int}", e(pages.page_job), name="job"),
        Route("/names/{name:str}", e(pages.page_name), name="job_name"),
        Route(
            "/jobs/{job_id:int}/{action:str}",
            e(actions.act_job, action=True),
            methods=["POST"],
            name="job_action",
        ),
        Route(
            "/queues/{name:str}/{action:str}",
            e(flow.act_queue, action=True),
            methods=["POST"],
            name="queue_action",
        ),
        Route("/schedules", e(pages.page_schedules), name="schedules"),
        Route(
            "/schedules/{name:str}/{action:str}",
            e(flow.act_schedule, action=True),
            methods=["POST"],
            name="schedule_action",
        ),
        Route("/workers", e(pages.page_workers), name="workers"),
        Route("/metrics", e(pages.page_metrics), name="metrics"),
        Route("/login", e(login.page_login, public=True), name="login"),
        Route("/login", e(login.do_login, public=True), methods=["POST"], name="do_login"),
        Route("/logout", e(login.do_logout, public=True), methods=["POST"], name="logout"),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


async def server_error(request: Request, exc: Exception) -> Response:
    """The 500 response: plain, with the security headers (Starlette sends it from outside the
    middleware that adds them to every other response)."""
    headers = {k.decode(): v.decode() for k, v in SecurityHeaders.HEADERS}
    return PlainTextResponse(
        "500 Internal Server Error: the dashboard failed; its log says why.\n",
        500,
        headers={**headers, "cache-control": "no-store"},
    )


def _resolve_store(database: Store | str | URL | Engine | None) -> Store:
    if database is None:
        return runtime.get_store()
    if isinstance(database, Store):
        return database
    if isinstance(database, Engine):
        return Store(database)
    return Store.from_url(database)
