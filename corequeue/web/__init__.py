"""The corequeue dashboard: an ASGI application (Starlette + Jinja2), optional extra
``corequeue[dashboard]``.

``corequeue dashboard`` serves it with uvicorn; an application can mount it under a path of its
own::

    from corequeue.web import create_app
    app.mount("/jobs-admin", create_app("postgresql://app@db/app", token="s3cret"))

This package imports Starlette only when :func:`create_app` is called, so ``corequeue`` works
without the extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import URL, Engine
    from starlette.applications import Starlette

    from corequeue.store.queries import Store

__all__ = ["create_app"]


def create_app(
    database: Store | str | URL | Engine | None = None,
    *,
    token: str | None = None,
    read_only: bool = False,
    secret: str | bytes | None = None,
    heartbeat_timeout: float = 60.0,
    refresh_seconds: float = 5.0,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """Return the dashboard's ASGI application.

    ``database`` is a Store, a URL or an Engine (default: corequeue's configured database).
    With ``token`` every request must carry it (``Authorization: Bearer TOKEN``, basic auth with
    the token as password, or the login form's session cookie); without one, anyone who can
    reach the app may use it, so serve it on localhost only: without a token it answers only
    to loopback host names and ``allowed_hosts`` (with a token, to any unless ``allowed_hosts``
    is given). ``read_only`` hides and refuses every action. ``secret`` signs session cookies
    (default: random per process, so a restart logs everyone out; set one to share sessions
    between processes). ``heartbeat_timeout`` is the age after which a worker shows as gone;
    the overview refreshes itself every ``refresh_seconds``.

    Raises ConfigError when the dashboard extra is not installed.
    """
    try:
        from corequeue.web.app import build_app
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"starlette", "jinja2", "multipart"}:
            from corequeue.core.errors import ConfigError

            raise ConfigError(
                f"the dashboard needs {exc.name!r}: pip install 'corequeue[dashboard]'"
            ) from None
        raise
    return build_app(
        database,
        token=token,
        read_only=read_only,
        secret=secret,
        heartbeat_timeout=heartbeat_timeout,
        refresh_seconds=refresh_seconds,
        allowed_hosts=allowed_hosts,
    )
