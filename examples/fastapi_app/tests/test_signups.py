"""The recipe's tests, with corequeue's pytest plugin (no conftest needed for its fixtures)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from signups.jobs import SendWelcome

from tests.conftest import count

ADMIN = ("admin", "correct horse battery staple")


def test_a_signup_enqueues_its_welcome_in_the_request_transaction(
    client: TestClient, enqueued_jobs: Any
) -> None:
    response = client.post("/signups", json={"email": "ada@example.com"})
    assert response.status_code == 201
    enqueued_jobs.assert_enqueued(SendWelcome, response.json()["user"], queue="mail")


def test_a_failed_request_rolls_back_the_user_and_the_job(
    client: TestClient, corequeue_store: Any
) -> None:
    response = client.post("/signups", json={"email": "bob@example.com", "plan": "gold"})
    assert response.status_code == 422
    assert count(corequeue_store.engine, "signup_users") == 0
    assert count(corequeue_store.engine, "corequeue_jobs") == 0


def test_a_real_worker_sends_the_welcome(client: TestClient, corequeue_worker: Any) -> None:
    response = client.post("/signups", json={"email": "cy@example.com"})
    user = response.json()["user"]
    result = corequeue_worker.drain()
    assert [r.name for r in result.succeeded] == ["signups.jobs.SendWelcome"]
    handle = corequeue_worker.store.job_get(response.json()["job"])
    assert handle.state == "succeeded"
    with corequeue_worker.store.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(
            text("SELECT welcomed FROM signup_users WHERE id = :id"), {"id": user}
        ).scalar_one()


def test_the_dashboard_is_under_admin_jobs_behind_the_app_auth(client: TestClient) -> None:
    job = client.post("/signups", json={"email": "dee@example.com"}).json()["job"]
    assert client.get("/admin/jobs/").status_code == 401
    assert client.get("/admin/jobs/", auth=("admin", "wrong")).status_code == 401
    page = client.get(f"/admin/jobs/jobs/{job}", auth=ADMIN)
    assert page.status_code == 200
    assert "signups.jobs.SendWelcome" in page.text
