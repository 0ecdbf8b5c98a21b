"""The ending records which retry rule applied (issue 20), in a real ``corequeue run`` on SQLite
and PostgreSQL: each attempt's row keeps its rule, shown by ``corequeue jobs show`` (text and
``--json``), the dashboard's attempt list and the ``job_failed`` hook's event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from corequeue import JobState
from corequeue.store.queries import Store
from corequeue.web import create_app
from testing import function_jobs as fj
from testing.e2e import WorkerFactory, run_cli

IMPORTS = ("testing.function_jobs",)


@pytest.fixture
def ran(store: Store, database_url: str, workers: WorkerFactory, tmp_path: Path) -> Iterator[Any]:
    """One worker ran a job per rule until each failed; the ids by rule, and the hook log."""
    path, hook_log = str(tmp_path / "runs.jsonl"), tmp_path / "hooks.jsonl"
    ids = {
        "discard_on": fj.discarded.run_in_worker(path).id,  # retries=5, a ValueError
        "retry_on": fj.only_timeouts.run_in_worker(path).id,  # retries=2, a KeyError
        "retries_exhausted": fj.Exhausted(path).run_in_worker().id,  # 2 attempts
        "should_retry": fj.ShouldRetry(path).run_in_worker().id,  # yes once, then no
    }
    env = {"COREQUEUE_TEST_HOOK_LOG": str(hook_log)}
    worker = workers(database_url, "--burst", imports=IMPORTS, env=env)
    assert worker.wait_exit() == 0, worker.log()
    logged = [json.loads(line) for line in hook_log.read_text().splitlines()]
    yield ids, logged


def test_each_attempt_records_the_rule_that_applied(store: Store, ran: Any) -> None:
    ids, logged = ran
    expected = {
        "discard_on": ["discard_on"],  # at once, five retries left
        "retry_on": ["retry_on"],  # not in retry_on: at once, two retries left
        "retries_exhausted": [None, "retries_exhausted"],  # a default retry, then no more
        "should_retry": ["should_retry", "should_retry"],  # retried, then refused, by it
    }
    for rule, job_id in ids.items():
        row = store.job_get(job_id)
        assert row is not None and row.state is JobState.FAILED
        assert [a.rule for a in store.attempt_list(job_id)] == expected[rule], rule
        (failed,) = [e for e in logged if e["event"] == "job_failed" and e["id"] == job_id]
        assert failed["rule"] == rule
    discarded = store.job_get(ids["discard_on"])
    assert discarded is not None and (discarded.attempts, discarded.max_attempts) == (1, 6)


def test_jobs_show_and_the_dashboard_show_the_rule(
    store: Store, database_url: str, ran: Any
) -> None:
    ids, _ = ran
    job_id = ids["discard_on"]
    args = ["jobs", "show", str(job_id), "--database-url", database_url]
    text = run_cli(args)
    assert text.returncode == 0, text.stderr
    assert "attempt 1: errored at " in text.stdout and " (rule: discard_on) " in text.stdout
    shown = run_cli([*args, "--json"])
    assert shown.returncode == 0, shown.stderr
    assert [a["rule"] for a in json.loads(shown.stdout)["attempts_detail"]] == ["discard_on"]

    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        page = client.get(f"/jobs/{ids['retries_exhausted']}")
    assert page.status_code == 200
    assert "<th>Rule</th>" in page.text
    assert ">retries_exhausted</code>" in page.text
