"""Retry, cancel and delete: one job or a filtered selection, each confirmed first."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.testclient import TestClient

from corequeue.core.lifecycle import Action, actions_for
from corequeue.core.states import JobState
from corequeue.store.queries import Store
from corequeue.store.records import JobFilter
from corequeue.web.actions import ACTIONS, states_allowing
from tests.web.conftest import Seeded, csrf_of, new_job


def state_of(store: Store, job_id: int) -> JobState | None:
    job = store.job_get(job_id)
    return job.state if job is not None else None


def test_an_unconfirmed_action_shows_a_confirm_page_and_changes_nothing(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    csrf = csrf_of(client)
    page = client.post(f"/jobs/{seeded.failed}/retry", data={"csrf": csrf})
    assert page.status_code == 200
    assert "Confirm: retry" in page.text
    assert 'name="confirm" value="yes"' in page.text
    assert state_of(store, seeded.failed) is JobState.FAILED


def test_retry_a_failed_job(client: TestClient, store: Store, seeded: Seeded) -> None:
    csrf = csrf_of(client)
    response = client.post(f"/jobs/{seeded.failed}/retry", data={"csrf": csrf, "confirm": "yes"})
    assert response.status_code == 200
    assert str(response.url).endswith(f"/jobs/{seeded.failed}?notice=retried")
    assert "Job sent back to wait" in response.text
    job = store.job_get(seeded.failed)
    assert job is not None and job.state is JobState.REQUESTED
    assert job.max_attempts == 3  # one more attempt than it used


def test_cancel_a_waiting_job_then_delete_it(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    csrf = csrf_of(client)
    client.post(f"/jobs/{seeded.waiting}/cancel", data={"csrf": csrf, "confirm": "yes"})
    assert state_of(store, seeded.waiting) is JobState.CANCELLED
    response = client.post(f"/jobs/{seeded.waiting}/delete", data={"csrf": csrf, "confirm": "yes"})
    assert str(response.url).endswith("/jobs?notice=deleted")
    assert store.job_get(seeded.waiting) is None


def test_an_action_the_state_forbids_is_409_with_the_reason(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    csrf = csrf_of(client)
    retry = client.post(f"/jobs/{seeded.succeeded[0]}/retry", data={"csrf": csrf, "confirm": "yes"})
    assert retry.status_code == 409
    assert "succeeded" in retry.text
    delete = client.post(f"/jobs/{seeded.running}/delete", data={"csrf": csrf, "confirm": "yes"})
    assert delete.status_code == 409
    assert f"Job {seeded.running} is running: cancel it first, then delete it." in delete.text
    assert state_of(store, seeded.running) is JobState.RUNNING
    assert (
        client.post("/jobs/999999/retry", data={"csrf": csrf, "confirm": "yes"}).status_code == 404
    )
    assert client.post(f"/jobs/{seeded.failed}/explode", data={"csrf": csrf}).status_code == 404


def test_refusals_are_said_in_peoples_terms_never_a_500(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    csrf = csrf_of(client)
    confirmed = {"csrf": csrf, "confirm": "yes"}
    store.job_cancel(seeded.waiting, now=seeded.now)
    again = client.post(f"/jobs/{seeded.waiting}/cancel", data=confirmed)
    assert again.status_code == 409
    assert f"Job {seeded.waiting} is already cancelled: only waiting or running jobs" in again.text
    assert "cannot take event" not in again.text
    # Retrying a job whose unique key another job took meanwhile: a 409 saying so, not a 500.
    (old,) = store.job_insert_many([new_job(run_at=seeded.now, unique_key="k")], now=seeded.now)
    store.job_cancel(old.id, now=seeded.now)
    (new,) = store.job_insert_many([new_job(run_at=seeded.now, unique_key="k")], now=seeded.now)
    retry = client.post(f"/jobs/{old.id}/retry", data=confirmed)
    assert retry.status_code == 409
    assert "holds the unique key" in retry.text and "cancel that one first" in retry.text
    assert state_of(store, old.id) is JobState.CANCELLED
    assert state_of(store, new.id) is JobState.REQUESTED


def test_bulk_cancel_of_a_filtered_selection_is_confirmed_then_applied(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    now = datetime.now(UTC)
    extra = store.job_insert_many([new_job(queue="mail", run_at=now) for _ in range(3)], now=now)
    csrf = csrf_of(client)
    form = {"csrf": csrf, "action": "cancel", "queue": "mail"}
    confirm = client.post("/jobs/bulk", data=form)
    assert "Cancel <strong>3</strong> jobs" in confirm.text
    assert all(state_of(store, i.id) is JobState.REQUESTED for i in extra)
    done = client.post("/jobs/bulk", data={**form, "confirm": "yes"})
    assert "<strong>3</strong> jobs cancelled" in done.text
    assert all(state_of(store, i.id) is JobState.CANCELLED for i in extra)
    # Jobs outside the filter are untouched.
    assert state_of(store, seeded.waiting) is JobState.REQUESTED


def test_bulk_retry_only_touches_jobs_it_can_retry(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    csrf = csrf_of(client)
    # No state filter: retry applies to failed and cancelled jobs only.
    confirm = client.post("/jobs/bulk", data={"csrf": csrf, "action": "retry"})
    assert "Retry <strong>1</strong> job:" in confirm.text
    client.post("/jobs/bulk", data={"csrf": csrf, "action": "retry", "confirm": "yes"})
    assert state_of(store, seeded.failed) is JobState.REQUESTED
    assert state_of(store, seeded.succeeded[0]) is JobState.SUCCEEDED
    # A filter on a state the action cannot touch selects nothing.
    nothing = client.post(
        "/jobs/bulk", data={"csrf": csrf, "action": "retry", "state": "succeeded"}
    )
    assert "Retry <strong>0</strong> jobs" in nothing.text


def test_bulk_delete_by_state_and_search(client: TestClient, store: Store, seeded: Seeded) -> None:
    csrf = csrf_of(client)
    form = {"csrf": csrf, "action": "delete", "state": "succeeded", "job": "app.jobs.SendEmail"}
    client.post("/jobs/bulk", data={**form, "confirm": "yes"})
    assert all(store.job_get(i) is None for i in seeded.succeeded)
    assert store.job_get(seeded.xss) is not None  # another job name
    remaining = store.job_list(JobFilter(states=(JobState.SUCCEEDED,)), limit=100)
    assert [j.id for j in remaining] == [seeded.xss]


def test_the_dashboard_offers_what_the_core_allows() -> None:
    # The dashboard keeps no table of its own: the states each action applies to come from
    # corequeue.core.lifecycle.actions_for, and are the ones the dashboard has always offered.
    assert {a: states_allowing(a) for a in ACTIONS} == {
        Action.RETRY: (JobState.FAILED, JobState.CANCELLED),
        Action.CANCEL: (JobState.REQUESTED, JobState.RUNNING),
        Action.DELETE: (
            JobState.REQUESTED,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
        ),
    }
    for state in JobState:
        assert {a for a in ACTIONS if state in states_allowing(a)} == actions_for(state)
