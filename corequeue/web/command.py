"""``corequeue dashboard``: serve the dashboard with uvicorn.

Imports nothing from Starlette at module level, so ``corequeue --help`` works without the
dashboard extra; the command itself then says what to install.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from corequeue.commands import add_common_options
from corequeue.core.errors import ConfigError, CorequeueError
from corequeue.web.security import check_bind

TOKEN_ENV = "COREQUEUE_DASHBOARD_TOKEN"
SECRET_ENV = "COREQUEUE_DASHBOARD_SECRET"


def add_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="serve the web dashboard",
        description=(
            "Serve the dashboard (overview, job history, schedules, workers, /metrics). "
            "It listens on 127.0.0.1 unless told otherwise, and refuses any other address "
            f"without a token (--token or {TOKEN_ENV})."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument(
        "--token",
        help=f"require this token (Bearer, basic auth or login form); default ${TOKEN_ENV}",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="hide and refuse every action (default: actions allowed)",
    )
    p.add_argument(
        "--proxy-headers",
        action="store_true",
        help=(
            "behind a TLS proxy: trust its X-Forwarded-Proto and X-Forwarded-For (from "
            "--forwarded-allow-ips), so cookies get the Secure flag and throttling sees clients "
            "(default: headers ignored)"
        ),
    )
    p.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="the proxy addresses trusted with --proxy-headers (default 127.0.0.1)",
    )
    add_common_options(
        p,
        json_flag=False,
        import_help=(
            "module that registers jobs, to name their parameters (repeatable; default: the "
            "imports setting)"
        ),
    )
    p.set_defaults(handler=run_dashboard)


def resolve_token(flag: str | None, environ: Any = None) -> str | None:
    """The token from the flag, else the environment; empty means none."""
    env = os.environ if environ is None else environ
    token = flag if flag is not None else env.get(TOKEN_ENV)
    return token.strip() or None if token else None


def run_dashboard(args: argparse.Namespace) -> int:
    from corequeue.config import load_settings

    token = resolve_token(args.token)
    try:
        check_bind(args.host, token)
        settings = load_settings(
            args.config,
            overrides={"database_url": args.database_url, "imports": args.imports or None},
        )
        from corequeue.commands import import_modules

        import_modules(settings.imports)  # job classes name their parameters on job pages
        try:
            import uvicorn
        except ModuleNotFoundError:
            raise ConfigError(
                "the dashboard needs uvicorn and starlette: pip install 'corequeue[dashboard]'"
            ) from None
        from corequeue.store.queries import Store
        from corequeue.web import create_app

        store = Store.from_url(settings.database_url)
        store.check_schema()
        app = create_app(
            store,
            token=token,
            read_only=args.read_only,
            secret=os.environ.get(SECRET_ENV) or None,
            heartbeat_timeout=settings.heartbeat_timeout,
        )
    except CorequeueError as exc:
        print(f"corequeue dashboard: error: {exc}", file=sys.stderr)
        return 2
    host = args.host.strip("[]")
    shown = f"[{host}]" if ":" in host else host
    print(
        f"corequeue dashboard on http://{shown}:{args.port}/"
        + (" (token required)" if token else "")
        + (" (read-only)" if args.read_only else ""),
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=host,
        port=args.port,
        log_level="warning",
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    return 0
