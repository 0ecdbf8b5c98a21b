"""Logging in and out of the dashboard with its token (the session cookie remembers it)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from corequeue.web.dashboard import Context, Dashboard
from corequeue.web.query import form_field
from corequeue.web.security import safe_next


def page_login(dash: Dashboard, request: Request, ctx: Context) -> Response:
    if not dash.guard.auth_required or ctx.session.authenticated:
        return dash.redirect(request, "/")
    return dash.render(
        request,
        ctx,
        "login.html",
        {"error": None, "next": request.query_params.get("next", ""), "hide_nav": True},
    )


def do_login(dash: Dashboard, request: Request, ctx: Context) -> Response:
    assert ctx.form is not None
    root = dash.base_url(request)
    target = safe_next(form_field(ctx.form, "next"), root)
    if not dash.guard.auth_required:
        return RedirectResponse(target, status_code=303)
    client = dash.client_of(request)
    dash.check_lockout(client)
    if not dash.guard.token_matches(form_field(ctx.form, "token")):
        dash.guard.throttle.failed(client, time.monotonic())
        return dash.render(
            request,
            ctx,
            "login.html",
            {
                "error": "That token is not right.",
                "next": form_field(ctx.form, "next") or "",
                "hide_nav": True,
            },
            status=401,
        )
    dash.guard.throttle.succeeded(client)
    ctx.session = dash.guard.new_session(authenticated=True, now=int(time.time()))
    return RedirectResponse(target, status_code=303)


def do_logout(dash: Dashboard, request: Request, ctx: Context) -> Response:
    dash.guard.revoke(ctx.session, now=int(time.time()))  # a copied cookie ends here too
    ctx.clear_cookie = True
    return dash.redirect(request, "/login" if dash.guard.auth_required else "/")
