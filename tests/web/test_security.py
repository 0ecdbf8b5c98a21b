"""Credentials, CSRF, read-only mode and where the dashboard may listen."""

from __future__ import annotations

import base64

import pytest
from starlette.testclient import TestClient

from corequeue.core.errors import ConfigError
from corequeue.core.states import JobState
from corequeue.store.queries import Store
from corequeue.web import create_app
from corequeue.web.command import resolve_token
from corequeue.web.security import Guard, check_bind, safe_next
from tests.web.conftest import Seeded, csrf_of

TOKEN = "s3cret-token"


@pytest.fixture
def guarded(store: Store) -> TestClient:
    return TestClient(create_app(store, token=TOKEN), base_url="http://127.0.0.1")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "path", ["/", "/jobs", "/jobs/1", "/schedules", "/workers", "/metrics", "/api/overview"]
)
def test_every_page_needs_credentials_when_a_token_is_set(guarded: TestClient, path: str) -> None:
    response = guarded.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "s3cret" not in response.text


def test_wrong_credentials_are_refused(guarded: TestClient) -> None:
    for header in (
        "Bearer nope",
        basic("admin", "nope"),
        "Basic !!!",
        "Token " + TOKEN,
        basic(TOKEN, ""),
    ):
        assert guarded.get("/jobs", headers={"Authorization": header}).status_code == 401, header


def test_bearer_and_basic_auth_with_the_token_are_accepted(guarded: TestClient) -> None:
    assert guarded.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert (
        guarded.get("/metrics", headers={"Authorization": basic("anyone", TOKEN)}).status_code
        == 200
    )


def test_login_form_sets_a_session_cookie_and_logout_ends_it(guarded: TestClient) -> None:
    page = guarded.get("/jobs?state=failed")
    assert page.status_code == 401 and 'name="token"' in page.text
    csrf = csrf_of_page(page.text)
    wrong = guarded.post("/login", data={"token": "guess", "csrf": csrf, "next": "/jobs"})
    assert wrong.status_code == 401 and "not right" in wrong.text
    done = guarded.post(
        "/login",
        data={"token": TOKEN, "csrf": csrf, "next": "/jobs?state=failed"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/jobs?state=failed"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert guarded.get("/jobs").status_code == 200
    # The login started a new session: the old CSRF token no longer works.
    assert guarded.post("/logout", data={"csrf": csrf}).status_code == 403
    out = guarded.post("/logout", data={"csrf": csrf_of(guarded)}, follow_redirects=False)
    assert out.status_code == 303
    guarded.cookies.clear()
    assert guarded.get("/jobs").status_code == 401


def test_login_needs_the_csrf_token_and_never_redirects_off_site(guarded: TestClient) -> None:
    guarded.get("/login")
    assert guarded.post("/login", data={"token": TOKEN}).status_code == 403
    csrf = csrf_of_page(guarded.get("/login").text)
    done = guarded.post(
        "/login",
        data={"token": TOKEN, "csrf": csrf, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert done.headers["location"] == "/"
    assert safe_next("https://evil.example/", "") == "/"
    assert safe_next("/\\evil.example", "") == "/"
    assert safe_next("/jobs/3", "") == "/jobs/3"


def test_tampered_or_foreign_session_cookies_are_ignored(store: Store) -> None:
    now = 1_700_000_000
    guard = Guard(TOKEN)
    session = guard.new_session(authenticated=True, now=now)
    cookie = guard.dump_session(session)
    assert guard.load_session(cookie, now=now + 10) == session.__class__(session.id, True, now)
    body, sig = cookie.rsplit(".", 1)
    assert guard.load_session(body + "." + "0" * len(sig), now=now) is None
    assert guard.load_session("garbage", now=now) is None
    assert Guard("other-token").load_session(cookie, now=now) is None  # the token changed
    assert guard.load_session(cookie, now=now + 8 * 86400) is None  # expired


def test_post_without_a_valid_csrf_token_is_403_and_changes_nothing(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    client.get("/jobs")  # a session cookie, but no token in the form
    for data in ({"confirm": "yes"}, {"confirm": "yes", "csrf": "forged"}):
        response = client.post(f"/jobs/{seeded.waiting}/cancel", data=data)
        assert response.status_code == 403
        assert "CSRF" in response.text
    bulk = client.post("/jobs/bulk", data={"action": "delete", "confirm": "yes"})
    assert bulk.status_code == 403
    # A token from another session does not work either.
    other = TestClient(client.app, base_url="http://127.0.0.1")
    foreign = csrf_of(other)
    response = client.post(
        f"/jobs/{seeded.waiting}/cancel", data={"csrf": foreign, "confirm": "yes"}
    )
    assert response.status_code == 403
    assert store.job_get(seeded.waiting).state is JobState.REQUESTED  # type: ignore[union-attr]
    assert len(store.job_list(limit=100)) == 11


def test_csrf_token_also_accepted_in_a_header(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    csrf = csrf_of(client)
    response = client.post(
        f"/jobs/{seeded.waiting}/cancel",
        data={"confirm": "yes"},
        headers={"X-CSRF-Token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert store.job_get(seeded.waiting).state is JobState.CANCELLED  # type: ignore[union-attr]


def test_read_only_mode_hides_and_refuses_actions(store: Store, seeded: Seeded) -> None:
    with TestClient(create_app(store, read_only=True), base_url="http://127.0.0.1") as client:
        html = client.get(f"/jobs/{seeded.failed}").text
        assert "read-only" in html
        assert f'action="/jobs/{seeded.failed}/retry"' not in html
        assert 'action="/jobs/bulk"' not in client.get("/jobs").text
        csrf = csrf_of(client)
        for path, data in (
            (f"/jobs/{seeded.failed}/retry", {"confirm": "yes"}),
            (f"/jobs/{seeded.waiting}/cancel", {"confirm": "yes"}),
            (f"/jobs/{seeded.xss}/delete", {"confirm": "yes"}),
            ("/jobs/bulk", {"action": "delete", "confirm": "yes"}),
        ):
            response = client.post(path, data={"csrf": csrf, **data})
            assert response.status_code == 403, path
            assert "read-only" in response.text
    assert store.job_get(seeded.failed).state is JobState.FAILED  # type: ignore[union-attr]
    assert store.job_get(seeded.waiting).state is JobState.REQUESTED  # type: ignore[union-attr]
    assert store.job_get(seeded.xss) is not None


def test_security_headers(client: TestClient) -> None:
    headers = client.get("/").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_binding_beyond_localhost_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match="without a token"):
        check_bind(host, None)
    check_bind(host, "t0ken-of-16-chars")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_localhost_needs_no_token(host: str) -> None:
    check_bind(host, None)


def test_token_comes_from_the_flag_or_the_environment() -> None:
    assert resolve_token(None, {"COREQUEUE_DASHBOARD_TOKEN": "env"}) == "env"
    assert resolve_token("flag", {"COREQUEUE_DASHBOARD_TOKEN": "env"}) == "flag"
    assert resolve_token(None, {"COREQUEUE_DASHBOARD_TOKEN": "  "}) is None
    assert resolve_token(None, {}) is None


def csrf_of_page(html: str) -> str:
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]
