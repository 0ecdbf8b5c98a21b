"""/metrics is valid Prometheus text with the queue's numbers."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.web.conftest import Seeded


def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{family name: {sorted labels: value}} as prometheus_client parses the page."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[key] = sample.value
    return out


def test_metrics_parse_and_hold_jobs_attempts_timings_and_workers(
    client: TestClient, seeded: Seeded
) -> None:
    m = scrape(client)
    jobs = m["corequeue_jobs"]
    assert jobs[(("queue", "default"), ("state", "succeeded"))] == 7
    assert jobs[(("queue", "billing"), ("state", "failed"))] == 1
    assert jobs[(("queue", "reports"), ("state", "running"))] == 1
    assert jobs[(("queue", "default"), ("state", "requested"))] == 2
    assert m["corequeue_jobs_ready"][(("queue", "default"),)] == 1
    assert m["corequeue_jobs_scheduled"][(("queue", "default"),)] == 1
    assert m["corequeue_oldest_ready_job_age_seconds"][(("queue", "default"),)] >= 30
    assert m["corequeue_attempts"][(("outcome", "succeeded"),)] == 7
    assert m["corequeue_attempts"][(("outcome", "errored"),)] == 2
    assert m["corequeue_attempts"][(("outcome", "lost"),)] == 0
    assert m["corequeue_jobs_finished_recently"][(("state", "failed"),)] == 1
    assert m["corequeue_pickup_latency_seconds"][(("quantile", "0.5"),)] == 0.25
    assert m["corequeue_pickup_latency_seconds_count"][()] == 8
    assert m["corequeue_job_duration_seconds"][(("quantile", "0.99"),)] == 0.5
    assert m["corequeue_workers"][(("status", "alive"),)] == 1
    assert m["corequeue_running_jobs"][(("worker", seeded.worker_id),)] == 1
    age = m["corequeue_worker_heartbeat_age_seconds"][
        (("host", "web-1"), ("worker", seeded.worker_id))
    ]
    assert 0 <= age < 600


def test_metrics_of_an_empty_database_parse(client: TestClient) -> None:
    m = scrape(client)
    assert m["corequeue_workers"][(("status", "alive"),)] == 0
    assert "corequeue_jobs" not in m  # no queue yet, so no series
    assert m["corequeue_pickup_latency_seconds_count"][()] == 0


def test_label_values_are_escaped(client: TestClient, store: object) -> None:
    from datetime import UTC, datetime

    from corequeue.store.queries import Store
    from tests.web.conftest import new_job

    assert isinstance(store, Store)
    now = datetime.now(UTC)
    store.job_insert_many([new_job(queue='we"ird\\queue\nname', run_at=now)], now=now)
    m = scrape(client)
    assert m["corequeue_jobs"][(("queue", 'we"ird\\queue\nname'), ("state", "requested"))] == 1
