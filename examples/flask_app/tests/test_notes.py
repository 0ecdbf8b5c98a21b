"""The recipe's tests, with corequeue's pytest plugin (no conftest needed for its fixtures)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from notes.jobs import CountWords

from tests.conftest import count

ADMIN = ("admin", "correct horse battery staple")


def test_a_note_enqueues_its_word_count(client: FlaskClient, enqueued_jobs: Any) -> None:
    response = client.post("/notes", json={"text": "three short words"})
    assert response.status_code == 201
    enqueued_jobs.assert_enqueued(CountWords, response.json["note"])


def test_a_failed_request_rolls_back_the_note_and_the_job(
    client: FlaskClient, corequeue_store: Any
) -> None:
    response = client.post("/notes", json={"text": "   "})
    assert response.status_code == 422
    assert count(corequeue_store.engine, "notes") == 0
    assert count(corequeue_store.engine, "corequeue_jobs") == 0


def test_a_real_worker_counts_the_words(client: FlaskClient, corequeue_worker: Any) -> None:
    response = client.post("/notes", json={"text": "a real worker ran this"})
    result = corequeue_worker.drain()
    assert [r.name for r in result.succeeded] == ["notes.jobs.CountWords"]
    record = corequeue_worker.store.job_get(response.json["job"])
    assert record.state == "succeeded" and record.result == "5"


def test_the_dashboard_is_under_admin_jobs_behind_the_app_auth(client: FlaskClient) -> None:
    job = client.post("/notes", json={"text": "x"}).json["job"]
    assert client.get("/admin/jobs/").status_code == 401
    page = client.get(f"/admin/jobs/jobs/{job}", auth=ADMIN)
    assert page.status_code == 200
    assert "notes.jobs.CountWords" in page.text
