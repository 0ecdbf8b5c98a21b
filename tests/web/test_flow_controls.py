"""The dashboard's flow controls (issue 23): pause and resume a queue on ``/`` and a schedule on
``/schedules``, each a POST through the CSRF and origin checks; the states are shown."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.testclient import TestClient

from corequeue.core import limits
from corequeue.core.schedules import ScheduleSpec
from corequeue.store.queries import Store
from corequeue.store.schedules import schedule_list, schedule_sync_many
from tests.web.conftest import Seeded, csrf_of


def _paused(store: Store, name: str) -> bool:
    return store.queue_states().get(name) is not None and store.queue_states()[name].paused


def test_pause_and_resume_a_queue_from_the_overview(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    store.queue_configure({"default": (3, limits.Rate(100, 60.0))}, now=datetime.now(UTC))
    page = client.get("/")
    assert 'action="/queues/default/pause"' in page.text
    assert "max 3" in page.text and "100/m" in page.text
    csrf = csrf_of(client, "/")
    done = client.post("/queues/default/pause", data={"csrf": csrf})
    assert done.status_code == 200 and str(done.url).endswith("/?notice=queue_paused")
    assert _paused(store, "default")
    assert 'action="/queues/default/resume"' in done.text and "paused" in done.text
    client.post("/queues/default/resume", data={"csrf": csrf})
    assert not _paused(store, "default")


def test_a_paused_queue_without_jobs_is_listed(client: TestClient, store: Store) -> None:
    store.queue_pause("empty", now=datetime.now(UTC))
    assert 'action="/queues/empty/resume"' in client.get("/").text


def test_the_controls_need_the_csrf_token_and_the_same_site(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    assert client.post("/queues/default/pause", data={"csrf": "forged"}).status_code == 403
    assert not _paused(store, "default")
    csrf = csrf_of(client, "/")
    cross = client.post(
        "/queues/default/pause",
        data={"csrf": csrf},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    assert not _paused(store, "default")
    assert client.post("/queues/default/explode", data={"csrf": csrf}).status_code == 404


def test_pause_and_resume_a_schedule(client: TestClient, store: Store) -> None:
    now = datetime.now(UTC)
    schedule_sync_many(store, [ScheduleSpec("nightly", "tests.Job", "0 3 * * *", "UTC")], now=now)
    page = client.get("/schedules")
    assert 'action="/schedules/nightly/pause"' in page.text
    csrf = csrf_of(client, "/schedules")
    done = client.post("/schedules/nightly/pause", data={"csrf": csrf})
    assert str(done.url).endswith("/schedules?notice=schedule_paused")
    assert [s.paused for s in schedule_list(store)] == [True]
    assert 'action="/schedules/nightly/resume"' in done.text
    client.post("/schedules/nightly/resume", data={"csrf": csrf})
    assert [s.paused for s in schedule_list(store)] == [False]
    assert client.post("/schedules/other/pause", data={"csrf": csrf}).status_code == 404


def test_metrics_export_pauses_and_limits(client: TestClient, store: Store) -> None:
    now = datetime.now(UTC)
    store.queue_configure({"mail": (2, limits.Rate(100, 60.0))}, now=now)
    store.queue_pause("mail", now=now)
    store.queue_pause("other", now=now)
    store.queue_pause("other", paused=False, now=now)
    schedule_sync_many(store, [ScheduleSpec("nightly", "tests.Job", "0 3 * * *", "UTC")], now=now)
    text = client.get("/metrics").text
    assert 'corequeue_queue_paused{queue="mail"} 1' in text
    assert 'corequeue_queue_paused{queue="other"} 0' in text
    assert 'corequeue_queue_concurrency_limit{queue="mail"} 2' in text
    assert 'corequeue_queue_rate_limit{queue="mail",period="60"} 100' in text
    assert 'corequeue_schedule_paused{schedule="nightly"} 0' in text
