"""The dashboard reads like the application: parameters decoded and named, search by a
parameter's value, a page per job name, running jobs' elapsed time."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from starlette.testclient import TestClient

from corequeue import Job, registry
from corequeue.core.states import Outcome
from corequeue.store.queries import Store
from corequeue.store.records import NewJob
from tests.web.conftest import Seeded, new_job, run_job

ORDER_PARAMS = {
    "args": [7, {"$cq": "orm", "v": {"model": "shop.models.Order", "pk": [12]}}],
    "kwargs": {"note": "gift wrap"},
}


class NotifyBuyer(Job):
    def __init__(self, user_id: int, order: object, note: str = "") -> None:
        self.user_id, self.order, self.note = user_id, order, note


def test_a_jobs_parameters_are_decoded_and_named_by_its_class(
    client: TestClient, store: Store
) -> None:
    now = datetime.now(UTC)
    name = "tests.web.test_readable.NotifyBuyer"
    job_id = run_job(store, new_job(name, params=ORDER_PARAMS, run_at=now), [Outcome.SUCCEEDED])
    unnamed = client.get(f"/jobs/{job_id}").text
    assert "args[0]" in unnamed and "Order#12" in unnamed  # the class is not registered here
    registry.add(NotifyBuyer)
    try:
        html = client.get(f"/jobs/{job_id}").text
    finally:
        registry._JOBS.pop(name, None)
    assert '<dt>user_id</dt><dd><code class="wrap">7</code>' in html
    assert '<dt>order</dt><dd><code class="wrap">Order#12</code>' in html
    assert '<dt>note</dt><dd><code class="wrap">&#39;gift wrap&#39;</code>' in html
    assert "/jobs?param=Order%2312" in html  # each value links to a search for it
    assert f'href="/names/{name}"' in html


def compact(job: NewJob) -> NewJob:
    """``job`` with its parameters written as corequeue writes them (no spaces)."""
    return replace(job, params=json.dumps(json.loads(job.params), separators=(",", ":")))


def test_jobs_are_found_by_a_parameters_value(client: TestClient, store: Store) -> None:
    now = datetime.now(UTC)
    wanted = run_job(store, compact(new_job(params=ORDER_PARAMS, run_at=now)), [Outcome.SUCCEEDED])
    other = dict(ORDER_PARAMS, args=[77, {"$cq": "orm", "v": {"model": "a.Order", "pk": [1]}}])
    unwanted = run_job(store, compact(new_job(params=other, run_at=now)), [Outcome.SUCCEEDED])

    def found(value: str) -> set[int]:
        response = client.get("/jobs", params={"param": value})
        assert response.status_code == 200
        return {i for i in (wanted, unwanted) if f'href="/jobs/{i}"' in response.text}

    assert found("7") == {wanted}
    assert found("Order#12") == {wanted}
    assert found("Order#1") == {unwanted}
    assert found("gift wrap") == {wanted, unwanted}
    assert found("nothing like it") == set()


def test_a_job_names_page_has_percentiles_failure_rate_and_throughput(
    client: TestClient, seeded: Seeded
) -> None:
    html = client.get("/names/app.jobs.ChargeCard").text
    assert 'id="windows"' in html
    rows = html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 3  # 1 h, 24 h, 7 d
    for row in rows:
        cells = [c.split("</td>")[0].strip() for c in row.split("<td")[1:]]
        cells = [c.split(">", 1)[1] for c in cells]
        assert cells[1:7] == ["1", "0", "1", "0", "100.0 %", cells[6]], cells
    assert f'href="/jobs/{seeded.failed}"' in html
    sent = client.get("/names/app.jobs.SendEmail").text
    assert sent.count("0.0 %") == 3, sent  # 6 succeeded, none failed, in every window
    assert client.get("/names/no.such.Job").status_code == 200


def test_running_jobs_show_their_elapsed_time(client: TestClient, seeded: Seeded) -> None:
    workers = client.get("/workers").text
    assert 'class="muted elapsed" data-started="' in workers
    job = client.get(f"/jobs/{seeded.running}").text
    assert 'id="elapsed"' in job and "running for" in job  # the page's script ticks them
