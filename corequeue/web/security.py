"""Who may use the dashboard: token checks, signed session cookies, CSRF tokens, bind rules.

Stdlib only (hmac, hashlib, secrets), no framework: the app asks these functions and acts.

- A session is a random id in a cookie signed with HMAC-SHA256; it says whether its holder
  logged in with the token. Every visitor gets one, so the login form is CSRF-protected too.
- The CSRF token of a session is HMAC(key, "csrf:" + session id): nothing to store server-side,
  and it changes when the session does (at login).
- The signing key derives from the token (or an explicit secret), so changing the token logs
  everyone out; without either it is random per process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from corequeue.core.errors import ConfigError

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
SESSION_COOKIE = "corequeue_session"
SESSION_MAX_AGE = 7 * 86400


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without credentials. Raises ConfigError."""
    if host.strip().lower() not in LOCAL_HOSTS and not token:
        raise ConfigError(
            f"refusing to listen on {host!r} without a token: anyone who can reach it could "
            "retry, cancel and delete jobs. Set --token TOKEN (or COREQUEUE_DASHBOARD_TOKEN), "
            "or listen on 127.0.0.1"
        )


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    authenticated: bool
    issued_at: int
    is_new: bool = False


class Guard:
    """Signs and checks sessions, CSRF tokens and credentials for one app."""

    def __init__(self, token: str | None, secret: str | bytes | None = None) -> None:
        self.token = token or None
        if secret is not None:
            raw = secret.encode() if isinstance(secret, str) else secret
        elif self.token is not None:
            raw = b"corequeue-dashboard:" + self.token.encode()
        else:
            raw = secrets.token_bytes(32)
        self._key = hashlib.sha256(b"corequeue-session-key\0" + raw).digest()

    @property
    def auth_required(self) -> bool:
        return self.token is not None

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    # -- sessions -------------------------------------------------------------------------

    def new_session(self, *, authenticated: bool, now: int) -> Session:
        return Session(secrets.token_urlsafe(18), authenticated, now, is_new=True)

    def dump_session(self, session: Session) -> str:
        payload = json.dumps(
            {"sid": session.id, "auth": session.authenticated, "iat": session.issued_at},
            separators=(",", ":"),
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(payload)}"

    def load_session(self, cookie: str | None, *, now: int) -> Session | None:
        """The session in ``cookie`` if its signature is good and it has not expired."""
        if not cookie or "." not in cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = json.loads(payload)
            session = Session(str(data["sid"]), bool(data["auth"]), int(data["iat"]))
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= now - session.issued_at <= SESSION_MAX_AGE:
            return None
        return session

    # -- CSRF -----------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        return self._sign(b"csrf:" + session.id.encode())

    def csrf_valid(self, session: Session, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(self.csrf_token(session), str(candidate))

    # -- credentials ----------------------------------------------------------------------

    def token_matches(self, candidate: str | None) -> bool:
        if self.token is None or not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def header_credentials(self, authorization: str | None) -> bool:
        """True when an ``Authorization`` header carries the token (Bearer, or Basic with the
        token as password and any user name)."""
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return self.token_matches(value)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            _, sep, password = decoded.partition(":")
            return bool(sep) and self.token_matches(password)
        return False

    def allows(self, session: Session | None, authorization: str | None) -> bool:
        """Whether a request with this session and Authorization header may see the dashboard."""
        if not self.auth_required:
            return True
        if session is not None and session.authenticated:
            return True
        return self.header_credentials(authorization)


def safe_next(target: str | None, root: str) -> str:
    """Where to go after login: a path inside the app, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return root + "/"
    return target


class SecurityHeaders:
    """ASGI middleware that adds a strict Content-Security-Policy and friends to every response
    (a header the response already has is kept)."""

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
