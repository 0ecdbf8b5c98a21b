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


def test_metrics_by_queue_and_by_job_name(client: TestClient, seeded: Seeded) -> None:
    # What an autoscaler (KEDA) and an alert act on: per queue wait, per job name timings
    # and outcomes.
    m = scrape(client)
    delay = m["corequeue_queue_pickup_delay_seconds"]
    assert delay[(("quantile", "0.5"), ("queue", "default"))] == 0.25
    assert delay[(("quantile", "0.99"), ("queue", "billing"))] == 0.25
    assert m["corequeue_queue_pickup_delay_seconds_count"][(("queue", "default"),)] == 7
    assert m["corequeue_queue_pickup_delay_seconds_count"][(("queue", "billing"),)] == 1
    duration = m["corequeue_job_name_duration_seconds"]
    assert duration[(("name", "app.jobs.ChargeCard"), ("quantile", "0.9"))] == 0.5
    assert m["corequeue_job_name_duration_seconds_count"][(("name", "app.jobs.SendEmail"),)] == 6
    finished = m["corequeue_job_name_finished_recently"]
    assert finished[(("name", "app.jobs.SendEmail"), ("state", "succeeded"))] == 6
    assert finished[(("name", "app.jobs.ChargeCard"), ("state", "failed"))] == 1
    assert (("name", "app.jobs.Export"), ("state", "running")) not in finished


def test_the_example_alert_rules_name_metrics_that_exist(
    client: TestClient, seeded: Seeded
) -> None:
    import re
    from pathlib import Path

    rules = (Path(__file__).parents[2] / "docs" / "prometheus-alerts.yml").read_text()
    exprs = "\n".join(line for line in rules.splitlines() if not line.lstrip().startswith("#"))
    named = set(re.findall(r"\bcorequeue_[a-z_]+", exprs))
    assert len(named) >= 6 and named <= set(scrape(client)), named - set(scrape(client))
