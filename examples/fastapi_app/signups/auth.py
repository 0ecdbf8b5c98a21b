"""The application's own authentication (HTTP Basic against its admin credentials), used by
its endpoints and, in front of it, by the corequeue dashboard mounted under /admin/jobs."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def is_admin(username: str, password: str) -> bool:
    expected = os.environ.get("ADMIN_PASSWORD", "")
    return bool(expected) and secrets.compare_digest(
        f"{username}:{password}".encode(), f"admin:{expected}".encode()
    )


def basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        username, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return username, password


def admin_only(app: ASGIApp) -> ASGIApp:
    """``app`` behind the application's admin check: 401 for anyone else."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: dict[bytes, Any] = dict(scope["headers"])
            header = headers.get(b"authorization", b"").decode("latin-1")
            if not is_admin(*basic_credentials(header)):
                response = PlainTextResponse(
                    "admins only", 401, headers={"WWW-Authenticate": 'Basic realm="admin"'}
                )
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded
