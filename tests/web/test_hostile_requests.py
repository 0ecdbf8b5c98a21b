"""Issue 18, items 1-4, 7 and 9: hostile requests to the dashboard (DNS rebinding, cross-site
POSTs, token guessing, copied cookies, oversized or multipart bodies, input the database cannot
take, bidi controls), and a fuzz test over every filter of ``/jobs``."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from corequeue.core.errors import ConfigError
from corequeue.core.states import JobState
from corequeue.store.queries import Store
from corequeue.web import create_app
from corequeue.web.security import MAX_FAILURES, Guard, check_bind
from tests.web.conftest import Seeded, csrf_of, new_job, run_job

TOKEN = "s3cret-token-of-24-chars"
LOCAL = "http://127.0.0.1"


@pytest.fixture
def guarded(store: Store) -> TestClient:
    return TestClient(create_app(store, token=TOKEN), base_url=LOCAL)


def login(client: TestClient) -> None:
    csrf = csrf_of_page(client.get("/login").text)
    done = client.post("/login", data={"token": TOKEN, "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303


def csrf_of_page(html: str) -> str:
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


# -- 1: DNS rebinding ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example"])
def test_without_a_token_only_loopback_host_names_are_served(
    store: Store, seeded: Seeded, host: str
) -> None:
    client = TestClient(create_app(store), base_url=LOCAL)
    for path in ("/", f"/jobs/{seeded.failed}", "/metrics", "/static/style.css"):
        response = client.get(path, headers={"host": host})
        assert response.status_code == 400, path
        assert "host name" in response.text
        assert response.headers["x-frame-options"] == "DENY"
    for ok in ("127.0.0.1:8765", "localhost", "LOCALHOST:1", "[::1]:8765"):
        assert client.get("/jobs", headers={"host": ok}).status_code == 200, ok
    named = TestClient(create_app(store, allowed_hosts=["jobs.internal"]), base_url=LOCAL)
    assert named.get("/jobs", headers={"host": "jobs.internal:8765"}).status_code == 200
    assert named.get("/jobs", headers={"host": host}).status_code == 400
    # With a token, any name: the token protects it (the cookie is per host name).
    tokened = TestClient(create_app(store, token=TOKEN), base_url="http://jobs.example")
    assert tokened.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_post_from_another_site_is_refused_even_with_the_csrf_token(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    csrf = csrf_of(client)
    for headers in (
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ):
        response = client.post(
            "/jobs/bulk",
            data={"csrf": csrf, "action": "delete", "confirm": "yes"},
            headers=headers,
        )
        assert response.status_code == 403, headers
        assert "another site" in response.text
    assert len(store.job_list(limit=100)) == 11
    same = client.post(
        f"/jobs/{seeded.waiting}/cancel",
        data={"csrf": csrf, "confirm": "yes"},
        headers={"origin": LOCAL, "sec-fetch-site": "same-origin"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    assert store.job_get(seeded.waiting).state is JobState.CANCELLED  # type: ignore[union-attr]


# -- 2: offline guessing, throttling, weak tokens ---------------------------------------------


def test_the_session_key_does_not_derive_from_the_token() -> None:
    cookie = Guard(TOKEN).dump_session(Guard(TOKEN).new_session(authenticated=False, now=1))
    # Another guard with the same token (a guesser who found it) cannot verify or forge it.
    assert Guard(TOKEN).load_session(cookie, now=1) is None
    shared = Guard(TOKEN, secret="configured-secret")
    assert Guard(TOKEN, secret="configured-secret").load_session(
        shared.dump_session(shared.new_session(authenticated=True, now=1)), now=1
    )


def test_failed_logins_are_throttled_per_client(guarded: TestClient) -> None:
    csrf = csrf_of_page(guarded.get("/login").text)
    for _ in range(MAX_FAILURES):
        wrong = guarded.post("/login", data={"token": "guess", "csrf": csrf})
        assert wrong.status_code == 401
    locked = guarded.post("/login", data={"token": TOKEN, "csrf": csrf})
    assert locked.status_code == 429 and "try again" in locked.text
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/jobs", headers=bearer).status_code == 429  # the same client
    other = TestClient(guarded.app, base_url=LOCAL, client=("10.0.0.9", 5000))
    assert other.get("/jobs", headers=bearer).status_code == 200


def test_wrong_basic_or_bearer_credentials_are_throttled_too(guarded: TestClient) -> None:
    for _ in range(MAX_FAILURES):
        assert guarded.get("/jobs", headers={"Authorization": "Bearer no"}).status_code == 401
    right = guarded.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 429


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
@pytest.mark.parametrize("token", ["x", "t0ken", "fifteen-chars!!"])
def test_a_weak_token_is_refused_beyond_loopback(host: str, token: str) -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        check_bind(host, token)
    check_bind("127.0.0.1", token)  # on loopback the user decides


# -- 3: logout and token change end sessions ------------------------------------------------


def test_logout_ends_the_session_even_for_a_copied_cookie(store: Store) -> None:
    app = create_app(store, token=TOKEN)
    client = TestClient(app, base_url=LOCAL)
    login(client)
    copied = dict(client.cookies)
    assert client.get("/jobs").status_code == 200
    assert client.post("/logout", data={"csrf": csrf_of(client)}).status_code == 200
    thief = TestClient(app, base_url=LOCAL, cookies=copied)
    assert thief.get("/jobs").status_code == 401


def test_a_new_token_ends_sessions_made_with_the_old_one(store: Store) -> None:
    old = create_app(store, token=TOKEN, secret="kept-across-restarts")
    client = TestClient(old, base_url=LOCAL)
    login(client)
    cookies = dict(client.cookies)
    same = create_app(store, token=TOKEN, secret="kept-across-restarts")
    assert TestClient(same, base_url=LOCAL, cookies=cookies).get("/jobs").status_code == 200
    changed = create_app(store, token=TOKEN + "-new", secret="kept-across-restarts")
    assert TestClient(changed, base_url=LOCAL, cookies=cookies).get("/jobs").status_code == 401


# -- 4: bodies ------------------------------------------------------------------------------


def test_login_takes_only_small_urlencoded_forms(guarded: TestClient) -> None:
    csrf = csrf_of_page(guarded.get("/login").text)
    multipart = guarded.post(
        "/login", data={"csrf": csrf}, files={"upload": ("big.bin", b"x" * 100_000)}
    )
    assert multipart.status_code == 415
    big = guarded.post(
        "/login",
        content=b"csrf=" + csrf.encode() + b"&pad=" + b"x" * 70_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413
    lying = guarded.post(
        "/login",
        content=b"x" * 10,
        headers={"content-type": "application/x-www-form-urlencoded", "content-length": "1e9"},
    )
    assert lying.status_code in (400, 413)
    bad = guarded.post(
        "/login",
        content=b"token=%ff%fe&csrf=" + csrf.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert bad.status_code == 400


# -- 7: input the database cannot take ---------------------------------------------------------


def test_hostile_credentials_and_csrf_values_are_refused_not_500(guarded: TestClient) -> None:
    for header in (
        "Basic " + base64.b64encode("ü:é".encode()).decode(),
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
        "Basic w7w=é",
        "Bearer é²",
    ):
        response = guarded.get("/jobs", headers={b"Authorization": header.encode()})
        assert response.status_code == 401, header
    guarded.get("/login")
    response = guarded.post("/login", data={"token": TOKEN, "csrf": "é²\u202e"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/jobs?q=%C2%B2",
        "/jobs?q=%00",
        "/jobs?queue=a%00b",
        "/jobs?job=%00",
        "/jobs?before=1234567890123456789012345",
        "/jobs?after=-99999999999999999999",
        "/jobs?before=%C2%B2",
        "/jobs?from=0001-01-01T00:00%2B14:00",
        "/jobs?to=9999-12-31T23:59-14:00",
        "/jobs?from=99999-01-01",
        "/jobs?q=" + "x" * 5000,
    ],
)
def test_filters_the_database_cannot_take_are_400_not_500(
    client: TestClient, seeded: Seeded, path: str
) -> None:
    response = client.get(path)
    assert response.status_code in (200, 400), response.text[-500:]
    assert "content-security-policy" in response.headers


@pytest.mark.parametrize("job_id", [2**63, 2**64 + 5, 10**30])
def test_ids_beyond_the_column_are_404(client: TestClient, job_id: int) -> None:
    assert client.get(f"/jobs/{job_id}").status_code == 404
    csrf = csrf_of(client)
    response = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf, "confirm": "yes"})
    assert response.status_code == 404


def test_a_500_still_carries_the_security_headers(store: Store) -> None:
    app = create_app(store)
    client = TestClient(app, base_url=LOCAL, raise_server_exceptions=False)

    def broken(**kwargs: object) -> None:
        raise RuntimeError("boom")

    app.state.dashboard.monitor.queue_stats = broken
    response = client.get("/")
    assert response.status_code == 500
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "boom" not in response.text and "Traceback" not in response.text


# -- 9: bidi controls -----------------------------------------------------------------------


def test_bidi_and_invisible_characters_in_user_text_are_shown_not_obeyed(
    client: TestClient, store: Store
) -> None:
    now = datetime.now(UTC)
    job_id = run_job(
        store,
        new_job(
            "app.jobs.Upload\u2067",
            params={"args": ["\u202etxt.exe"], "kwargs": {}},
            unique_key="key\u200b",
            run_at=now,
        ),
        [],
    )
    with store.engine.begin() as conn:
        from corequeue.store import schema

        conn.execute(
            schema.jobs.update()
            .where(schema.jobs.c.id == job_id)
            .values(error="RuntimeError: \u202etxt.exe")
        )
    for path in (f"/jobs/{job_id}", "/jobs"):
        html = client.get(path).text
        for control in ("\u202e", "\u2067", "\u200b"):
            assert control not in html, (path, control)
        assert "[U+202E]txt.exe" in html
    assert json.loads(store.job_get(job_id).params)["args"] == ["\u202etxt.exe"]  # type: ignore[union-attr]


# -- the fuzz test --------------------------------------------------------------------------

TEXT = st.text(max_size=40) | st.sampled_from(
    ["²", "\x00", "-1", "9" * 25, "0001-01-01T00:00+14:00"]
)
NUMBER = st.integers(min_value=-(2**80), max_value=2**80).map(str) | st.floats().map(str)
FIELDS = ["state", "queue", "job", "q", "from", "to", "before", "after"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), TEXT | NUMBER), max_size=6))
def test_fuzz_every_jobs_filter_never_500s(
    client: TestClient, store: Store, fields: list[tuple[str, str]]
) -> None:
    before = len(store.job_list(limit=1000))
    query = urlencode(fields, errors="surrogatepass")  # lone surrogates: invalid UTF-8
    response = client.get(f"/jobs?{query}")
    assert response.status_code in (200, 400), (fields, response.text[-800:])
    assert "Traceback" not in response.text
    csrf = csrf_of(client)
    body = urlencode([("csrf", csrf), ("action", "cancel"), *fields], errors="surrogatepass")
    bulk = client.post(
        "/jobs/bulk",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert bulk.status_code in (200, 400), (fields, bulk.text[-800:])
    assert len(store.job_list(limit=1000)) == before  # nothing confirmed, nothing changed
