"""``corequeue run --log-format json``: a real worker's output, parsed line by line."""

from __future__ import annotations

import json
from typing import Any

import corequeue
from corequeue.store.queries import Store
from testing.e2e import WorkerFactory
from testing.observed_jobs import ChargeOrder, Explode


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object (a line that is not one fails the test)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(value, dict), line
        out.append(value)
    return out


def test_json_log_lines_parse_and_carry_the_per_job_fields(
    store: Store, database_url: str, workers: WorkerFactory
) -> None:
    charged = corequeue.enqueue_many([ChargeOrder(7), ChargeOrder(8)], priority=5)
    [failed] = corequeue.enqueue_many([Explode("no stock")], retries=0)

    worker = workers(
        database_url, "--burst", "--log-format", "json", imports=["testing.observed_jobs"]
    )

    assert worker.wait_exit() == 0, worker.log()
    lines = json_lines(worker.log())
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    finished = {r["job_id"]: r for r in lines if r["message"].startswith("finished job_id=")}
    assert set(finished) == {charged[0].id, charged[1].id, failed.id}, lines
    for handle in charged:
        line = finished[handle.id]
        assert line["level"] == "INFO" and line["logger"] == "corequeue.worker"
        assert (line["job_name"], line["outcome"], line["state"]) == (
            "testing.observed_jobs.ChargeOrder",
            "succeeded",
            "succeeded",
        )
        assert line["queue"] == "default" and line["attempt"] == 1 and line["priority"] == 5
        assert isinstance(line["pid"], int) and line["pid"] != worker.pid
        assert line["waited_ms"] >= 0 and line["duration_ms"] >= 0
        assert "test_log_format.py:" in line["source"], line
    bad = finished[failed.id]
    assert bad["level"] == "WARNING" and bad["outcome"] == "errored"
    assert bad["error"] == "RuntimeError: no stock" and bad["priority"] == 0
    # The job's own logging line (in the child) is a JSON line too, and names its job.
    own = {r["message"]: r for r in lines if r["logger"] == "app.orders"}
    assert set(own) == {"charging order 7", "charging order 8"}
    for handle, order in zip(charged, (7, 8), strict=True):
        line = own[f"charging order {order}"]
        assert line["job_id"] == handle.id, line
        assert line["job_name"] == "testing.observed_jobs.ChargeOrder"
        assert (line["queue"], line["attempt"]) == ("default", 1)


def test_a_jobs_own_log_line_names_its_job_in_text_too(
    store: Store, database_url: str, workers: WorkerFactory
) -> None:
    [handle] = corequeue.enqueue_many([ChargeOrder(9)])

    worker = workers(database_url, "--burst", imports=["testing.observed_jobs"])

    assert worker.wait_exit() == 0, worker.log()
    (line,) = [x for x in worker.log().splitlines() if "charging order 9" in x]
    assert line.endswith(
        f"INFO app.orders charging order 9 job_id={handle.id} "
        "job=testing.observed_jobs.ChargeOrder queue=default attempt=1"
    ), line
