"""Who may use the dashboard: token checks, signed session cookies, CSRF tokens, login
throttling, trusted hosts and origins, bind rules.

Stdlib only (hmac, hashlib, secrets), no framework: the app asks these functions and acts.

- A session is a random id in a cookie signed with HMAC-SHA256; it says whether its holder
  logged in with the token. Every visitor gets one, so the login form is CSRF-protected too.
- The CSRF token of a session is HMAC(key, "csrf:" + session id): nothing to store server-side,
  and it changes when the session does (at login).
- The signing key is random per process unless a secret is configured; it never derives from
  the token, so a cookie is no oracle for guessing the token offline. A logged-in session also
  carries a fingerprint of the token (changing the token logs everyone out) and is revoked
  server-side at logout.
- Failed credentials are throttled per client; a token shorter than MIN_TOKEN_LENGTH is refused
  for an address beyond this machine.
- Without a token, only requests naming a loopback host (or a configured one) are served, and
  a POST from another site (Origin, Sec-Fetch-Site) is refused: no DNS rebinding.
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
#: The shortest token accepted for an address beyond this machine.
MIN_TOKEN_LENGTH = 16
#: Failed credentials a client may send per LOCKOUT_SECONDS before it is locked out that long.
MAX_FAILURES = 5
LOCKOUT_SECONDS = 300.0


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without credentials, or with a token that can be
    guessed. Raises ConfigError."""
    if host.strip().lower() in LOCAL_HOSTS:
        return
    if not token:
        raise ConfigError(
            f"refusing to listen on {host!r} without a token: anyone who can reach it could "
            "retry, cancel and delete jobs. Set --token TOKEN (or COREQUEUE_DASHBOARD_TOKEN), "
            "or listen on 127.0.0.1"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"refusing to listen on {host!r} with a {len(token)}-character token: it can be "
            f"guessed. Use at least {MIN_TOKEN_LENGTH} random characters, e.g. from "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
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
        else:
            raw = secrets.token_bytes(32)
        self._key = hashlib.sha256(b"corequeue-session-key\0" + raw).digest()
        # A logged-in session names the token it logged in with: a new token ends it.
        self._token_tag = "" if self.token is None else self._sign(b"token:" + self.token.encode())
        self._revoked: dict[str, int] = {}  # session id -> issued_at, until it would expire
        self.throttle = Throttle()

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
            {
                "sid": session.id,
                "auth": session.authenticated,
                "iat": session.issued_at,
                "tok": self._token_tag[:32] if session.authenticated else "",
            },
            separators=(",", ":"),
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(payload)}"

    def load_session(self, cookie: str | None, *, now: int) -> Session | None:
        """The session in ``cookie`` if its signature is good, it has not expired, was not
        logged out, and (logged in) names the current token."""
        if not cookie or "." not in cookie or len(cookie) > 1000:
            return None
        body, _, signature = cookie.rpartition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode()):
            return None
        try:
            data = json.loads(payload)
            session = Session(str(data["sid"]), bool(data["auth"]), int(data["iat"]))
            tag = str(data.get("tok", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not 0 <= now - session.issued_at <= SESSION_MAX_AGE or session.id in self._revoked:
            return None
        if session.authenticated and tag != self._token_tag[:32]:
            return None
        return session

    def revoke(self, session: Session, *, now: int) -> None:
        """End ``session`` for good (logout): its cookie, even copied, no longer works."""
        self._revoked = {
            sid: at for sid, at in self._revoked.items() if now - at <= SESSION_MAX_AGE
        }
        if len(self._revoked) >= 100_000:  # bounded: past that, every session ends
            self._revoked.clear()
            self._key = hashlib.sha256(self._key + secrets.token_bytes(32)).digest()
        self._revoked[session.id] = session.issued_at

    # -- CSRF -----------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        return self._sign(b"csrf:" + session.id.encode())

    def csrf_valid(self, session: Session, candidate: str | None) -> bool:
        if not candidate:
            return False
        expected = self.csrf_token(session).encode()
        return hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))

    # -- credentials ----------------------------------------------------------------------

    def token_matches(self, candidate: str | None) -> bool:
        if self.token is None or not candidate:
            return False
        given = candidate.encode("utf-8", "replace")
        return hmac.compare_digest(given, self.token.encode("utf-8", "replace"))

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
            except (binascii.Error, ValueError):  # not base64, not ASCII, not UTF-8
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


class Throttle:
    """Failed credentials per client: after MAX_FAILURES within LOCKOUT_SECONDS, the client is
    locked out for LOCKOUT_SECONDS (``now`` is a monotonic clock, an argument)."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}

    def locked_for(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again (0: it may)."""
        recent = [t for t in self._failures.get(client, []) if now - t < LOCKOUT_SECONDS]
        if len(recent) < MAX_FAILURES:
            return 0.0
        return max(LOCKOUT_SECONDS - (now - recent[-1]), 1.0)

    def failed(self, client: str, now: float) -> None:
        if len(self._failures) > 10_000:  # bounded memory: forget the quiet ones
            self._failures = {
                c: ts for c, ts in self._failures.items() if now - ts[-1] < LOCKOUT_SECONDS
            }
        recent = [t for t in self._failures.get(client, []) if now - t < LOCKOUT_SECONDS]
        self._failures[client] = [*recent[-MAX_FAILURES:], now]

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def host_of(header: str) -> str:
    """The host name of a ``Host`` header or an origin's authority, lower case, no port."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def cross_site(headers: Any) -> bool:
    """Whether a request's ``Sec-Fetch-Site`` or ``Origin`` says another site sent it."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False  # not a browser's cross-site request (curl, an old browser: CSRF token)
    _, sep, authority = origin.partition("://")
    own = headers.get("host", "").strip().lower()
    return not sep or authority.strip().lower() != own


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


async def _refuse(send: Any, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"cache-control", b"no-store"),
                *SecurityHeaders.HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


class TrustedHosts:
    """ASGI middleware that answers 400 to a request whose ``Host`` names none of ``allowed``
    (None: any host). Without a token, a dashboard answers to loopback names only, so a page
    on another domain that rebinds its name to 127.0.0.1 cannot read or drive it."""

    def __init__(self, app: Any, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.allowed is not None:
            raw = dict(scope.get("headers") or []).get(b"host", b"")
            if host_of(raw.decode("latin-1")) not in self.allowed:
                await _refuse(
                    send,
                    400,
                    "400 Bad Request: this dashboard does not answer to that host name. Open it "
                    "as http://127.0.0.1:PORT/ (or name the host in create_app(allowed_hosts=...)"
                    ", or set a token)\n",
                )
                return
        await self.app(scope, receive, send)
