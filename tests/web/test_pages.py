"""Every page renders real data, on SQLite and PostgreSQL, and shows user data as text."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from starlette.testclient import TestClient

from corequeue.core.states import JobState
from corequeue.store import schema
from corequeue.store.queries import Store
from corequeue.web import create_app
from tests.web.conftest import XSS, Seeded, new_job


def test_overview_shows_counts_chart_timings_queues_and_workers(
    client: TestClient, seeded: Seeded
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "Throughput, last 60 minutes" in html
    assert html.count('<rect class="succeeded"') == 7  # one bar per minute with a success
    assert html.count('<rect class="failed"') == 1
    assert ">billing</a>" in html and ">reports</a>" in html
    assert "web-1" in html  # the live worker, with the job it runs
    assert f'href="/jobs/{seeded.running}"' in html
    assert "250 ms" in html  # pick-up latency p50 of the seeded runs
    # The overview refreshes itself from a fragment of the same page.
    assert 'data-fragment="/?fragment=1"' in html
    fragment = client.get("/?fragment=1")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "Throughput" in fragment.text


def test_overview_json_endpoint(client: TestClient, seeded: Seeded) -> None:
    data = client.get("/api/overview").json()
    assert data["totals"] == {
        "requested": 2,
        "running": 1,
        "succeeded": 7,
        "failed": 1,
        "cancelled": 0,
    }
    default = next(q for q in data["queues"] if q["queue"] == "default")
    assert (default["ready"], default["scheduled"]) == (1, 1)
    assert default["oldest_wait_seconds"] >= 30
    assert len(data["throughput"]) == 60
    assert sum(b["succeeded"] for b in data["throughput"]) == 7
    assert data["pickup_latency"]["p50"] == 0.25
    assert data["workers"][0]["running"] == [seeded.running]


def test_job_detail_shows_params_attempts_tracebacks_and_source(
    client: TestClient, seeded: Seeded
) -> None:
    html = client.get(f"/jobs/{seeded.failed}").text
    assert "app.jobs.ChargeCard" in html
    assert "&#34;order_id&#34;: 99" in html  # parameters, pretty-printed and escaped
    assert html.count('<span class="badge errored">errored</span>') == 2  # both attempts
    assert "RuntimeError: payment gateway said &lt;b&gt;no&lt;/b&gt;" in html  # traceback as text
    assert "<b>no</b>" not in html
    assert "app/views.py:17" in html  # where it was enqueued
    assert f'action="/jobs/{seeded.failed}/retry"' in html
    assert f'action="/jobs/{seeded.failed}/cancel"' not in html  # not for a failed job


def test_parameters_with_a_script_tag_are_shown_as_text(client: TestClient, seeded: Seeded) -> None:
    html = client.get(f"/jobs/{seeded.xss}").text
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # The page's own scripts come from /static only, and the policy forbids inline ones.
    response = client.get(f"/jobs/{seeded.xss}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert html.count("<script") == 1


def test_unknown_job_is_404(client: TestClient, store: Store) -> None:
    response = client.get("/jobs/999999")
    assert response.status_code == 404
    assert "There is no job with id 999999" in response.text


def test_schedules_page_shows_schedules_with_next_and_last_runs_and_delayed_jobs(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.schedules),
            [
                {
                    "name": "nightly-report",
                    "job": "app.jobs.NightlyReport",
                    "expression": "0 3 * * *",
                    "timezone": "Europe/Paris",
                    "first_seen_at": now - timedelta(days=3),
                    "last_occurrence": now - timedelta(hours=5),
                    "last_job_id": seeded.failed,
                    "updated_at": now,
                },
                {
                    "name": "broken",
                    "job": "app.jobs.X",
                    "expression": "not cron",
                    "timezone": "UTC",
                    "first_seen_at": now,
                    "last_occurrence": None,
                    "last_job_id": None,
                    "updated_at": now,
                },
            ],
        )
    html = client.get("/schedules").text
    assert "nightly-report" in html and "<code>0 3 * * *</code>" in html
    assert "Europe/Paris" in html
    assert f'href="/jobs/{seeded.failed}">#{seeded.failed}</a> <span class="badge failed">' in html
    assert "invalid" in html  # the broken expression, instead of a next run
    # Next run: the next 03:00 on the wall clocks of Paris.
    paris = ZoneInfo("Europe/Paris")
    today = datetime.now(paris).date()
    candidates = [datetime.combine(today + timedelta(days=d), time(3), paris) for d in (0, 1)]
    expected = next(c for c in candidates if c > datetime.now(paris)).astimezone(UTC)
    assert f"<td>{expected:%Y-%m-%d %H:%M:%S} <span" in html
    # Jobs waiting for a later time: the delayed one, not the ready one.
    assert f'href="/jobs/{seeded.delayed}"' in html
    assert f'href="/jobs/{seeded.waiting}"' not in html


def test_workers_page(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/workers").text
    assert "web-1" in html and ">4242<" in html
    assert f'href="/jobs/{seeded.running}"' in html
    assert "done: 9" in html
    assert 'class="dot alive"' in html


def test_empty_database_renders_every_page(client: TestClient) -> None:
    for path in ("/", "/jobs", "/schedules", "/workers", "/metrics", "/api/overview"):
        assert client.get(path).status_code == 200, path
    assert "No jobs yet" in client.get("/").text


def test_history_filters_by_state_queue_job_search_and_time(
    client: TestClient, seeded: Seeded
) -> None:
    def ids(query: str) -> list[int]:
        html = client.get("/jobs" + query).text
        found = []
        for chunk in html.split('<td class="num"><a href="/jobs/')[1:]:
            found.append(int(chunk.split('"', 1)[0]))
        return found

    assert ids("?state=failed") == [seeded.failed]
    assert ids("?state=requested") == [seeded.delayed, seeded.waiting]
    assert ids("?queue=reports") == [seeded.running]
    assert ids("?job=app.jobs.Render") == [seeded.xss]
    assert ids("?q=welcome:100") == [seeded.waiting]
    # A unique key is shown with its policy, in the list and on the job's page.
    listed = client.get("/jobs?q=welcome:100").text
    assert 'title="unique key, held until it finishes">welcome:100</span>' in listed
    page = client.get(f"/jobs/{seeded.waiting}").text
    assert '<code>welcome:100</code> <span class="muted">held until it finishes</span>' in page
    assert ids(f"?q={seeded.failed}") == [seeded.failed]
    created_from = (seeded.now - timedelta(seconds=45)).strftime("%Y-%m-%dT%H:%M:%S")
    assert sorted(ids(f"?from={created_from}")) == sorted([seeded.waiting, seeded.delayed])
    assert "is not a date and time" in client.get("/jobs?from=yesterday").text
    assert "unknown state" in client.get("/jobs?state=bogus").text


def test_history_pages_with_keyset_links(store: Store) -> None:
    now = datetime.now(UTC)
    store.job_insert_many([new_job(run_at=now) for _ in range(120)], now=now)
    all_ids = sorted((j.id for j in store.job_list(limit=1000)), reverse=True)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        first = client.get("/jobs").text
        assert f'href="/jobs/{all_ids[49]}"' in first and f'href="/jobs/{all_ids[50]}"' not in first
        assert "Newer" not in first
        older = f"/jobs?before={all_ids[49]}"
        assert f'href="{older}"'.replace("/jobs?", "/jobs?") in first
        second = client.get(older).text
        assert f'href="/jobs/{all_ids[50]}"' in second and f'href="/jobs/{all_ids[99]}"' in second
        assert f'href="/jobs?after={all_ids[50]}"' in second  # back to the newer page
        third = client.get(f"/jobs?before={all_ids[99]}").text
        assert f'href="/jobs/{all_ids[119]}"' in third and "Older" not in third
        back = client.get(f"/jobs?after={all_ids[50]}").text
        assert f'href="/jobs/{all_ids[0]}"' in back and f'href="/jobs/{all_ids[49]}"' in back
        assert f'href="/jobs/{all_ids[50]}"' not in back
        # Filters stay in the pagination links.
        filtered = client.get("/jobs?state=requested&queue=default").text
        assert f"/jobs?state=requested&amp;queue=default&amp;before={all_ids[49]}" in filtered


def test_app_mounts_under_a_prefix(store: Store, seeded: Seeded) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/admin/queue", app=create_app(store))])
    with TestClient(outer, base_url="http://localhost") as client:
        html = client.get("/admin/queue/jobs").text
        assert f'href="/admin/queue/jobs/{seeded.failed}"' in html
        assert 'href="/admin/queue/static/style.css"' in html
        assert client.get("/admin/queue/static/style.css").status_code == 200
        assert client.get(f"/admin/queue/jobs/{seeded.failed}").status_code == 200
        assert store.job_get(seeded.failed).state is JobState.FAILED  # type: ignore[union-attr]


def test_app_from_a_url_opens_and_closes_its_own_engine(database_url: str) -> None:
    with TestClient(create_app(database_url), base_url="http://127.0.0.1") as client:
        assert client.get("/jobs").status_code == 200
        dashboard = client.app.state.dashboard  # type: ignore[attr-defined]
        assert dashboard.store.engine.pool.checkedin() >= 1
    assert dashboard.store.engine.pool.checkedin() == 0  # disposed at shutdown
