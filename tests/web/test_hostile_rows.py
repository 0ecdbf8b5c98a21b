"""Issue 18, items 5, 6 and 8: rows the code does not know, huge rows, and bulk actions on
many jobs, on both databases."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from corequeue import runtime
from corequeue.cli import main
from corequeue.core.lifecycle import Action
from corequeue.core.states import JobState
from corequeue.store import rows, schema
from corequeue.store.queries import Store
from tests.web.conftest import Seeded, csrf_of, new_job

CHECKS = (
    ("corequeue_jobs", "ck_corequeue_jobs_state"),
    ("corequeue_attempts", "ck_corequeue_attempts_outcome"),
)


@contextmanager
def checks_off(store: Store) -> Iterator[None]:
    """Inside: rows may hold what the state and outcome constraints forbid (tampered rows, or
    rows a newer corequeue wrote). On PostgreSQL the constraints are put back afterwards (the
    caller removes its odd rows first)."""
    definitions = {}
    with store.engine.begin() as conn:
        for table, name in CHECKS if store.is_postgresql else ():
            definitions[table, name] = conn.execute(
                sa.text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :n"),
                {"n": name},
            ).scalar_one()
            conn.execute(sa.text(f"ALTER TABLE {table} DROP CONSTRAINT {name}"))
    try:
        yield
    finally:
        with store.engine.begin() as conn:
            for (table, name), definition in definitions.items():
                conn.execute(sa.text(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"))


@pytest.fixture
def odd_rows(store: Store, seeded: Seeded) -> Iterator[Seeded]:
    """The seeded history with one job in a state, and one attempt with an outcome, that this
    code does not know."""
    with checks_off(store):
        with store.engine.begin() as conn:
            if not store.is_postgresql:
                conn.execute(sa.text("PRAGMA ignore_check_constraints = ON"))
            conn.execute(
                sa.update(schema.jobs)
                .where(schema.jobs.c.id == seeded.waiting)
                .values(state="paused\u202e")
            )
            conn.execute(
                sa.update(schema.attempts)
                .where(schema.attempts.c.job_id == seeded.failed)
                .values(outcome="vanished")
            )
            if not store.is_postgresql:
                conn.execute(sa.text("PRAGMA ignore_check_constraints = OFF"))
        try:
            yield seeded
        finally:
            with store.engine.begin() as conn:  # what the constraints allow again
                conn.execute(sa.delete(schema.jobs).where(schema.jobs.c.id == seeded.waiting))
                conn.execute(
                    sa.delete(schema.attempts).where(schema.attempts.c.outcome == "vanished")
                )


def test_an_unknown_state_or_outcome_shows_as_unknown_and_everything_keeps_serving(
    client: TestClient,
    store: Store,
    odd_rows: Seeded,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rows, "_reported", set())  # (each value is logged once per process)
    with caplog.at_level(logging.WARNING, logger="corequeue.store"):
        for path in ("/", "/jobs", "/metrics", "/api/overview", "/schedules", "/workers"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[-2000:])
        page = client.get(f"/jobs/{odd_rows.waiting}")
        assert page.status_code == 200 and "unknown" in page.text
        assert "/cancel" not in page.text and "/retry" not in page.text  # no action offered
        assert client.get(f"/jobs/{odd_rows.failed}").status_code == 200
        assert 'state="unknown"' in client.get("/metrics").text
        assert 'outcome="unknown"' in client.get("/metrics").text
        # Deleting it is refused (the core does not know the state), not a 500.
        csrf = csrf_of(client)
        refused = client.post(
            f"/jobs/{odd_rows.waiting}/delete", data={"csrf": csrf, "confirm": "yes"}
        )
        assert refused.status_code == 409
    warnings = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert any("paused" in w for w in warnings) and any("vanished" in w for w in warnings)
    assert len([w for w in warnings if "paused" in w]) == 1  # logged once
    assert "\u202e" not in "".join(warnings)  # (repr: the control character is escaped)
    for args in (["stats"], ["jobs", "list"], ["stats", "--json"], ["jobs", "list", "--json"]):
        capsys.readouterr()
        before = runtime._state.store
        try:
            assert main([*args, "--database-url", str(store.url)]) == 0, args
        finally:  # the command configured a store of its own: close it, put the test's back
            mine, runtime._state.store = runtime._state.store, before
            if mine is not None and mine is not before:
                mine.dispose()
        out = capsys.readouterr().out
        assert "unknown" in out, args
    assert store.job_get(odd_rows.waiting) is not None


def test_list_pages_read_neither_parameters_nor_results_and_cut_long_errors(
    client: TestClient, store: Store
) -> None:
    now = datetime.now(UTC)
    big = "x" * 200_000
    store.job_insert_many(
        [new_job(params={"args": [big], "kwargs": {}}, run_at=now + timedelta(hours=1))]
        + [new_job(params={"args": [big], "kwargs": {}}, run_at=now) for _ in range(3)],
        now=now,
    )
    with store.engine.begin() as conn:
        conn.execute(sa.update(schema.jobs).values(result=json.dumps(big), error="E" * 100_000))
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        for path in ("/jobs", "/jobs?q=Send", "/jobs?after=0", "/schedules"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert len(response.text) < 100_000, path
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert statements
    for statement in statements:
        assert "corequeue_jobs.params" not in statement, statement
        assert "corequeue_jobs.result" not in statement, statement
        raw_error = statement.replace("substr(corequeue_jobs.error", "")
        assert "corequeue_jobs.error" not in raw_error, statement
    assert any("substr(" in s.lower() for s in statements)


def test_bulk_actions_on_many_jobs_take_a_few_statements_per_batch(
    client: TestClient, store: Store
) -> None:
    now = datetime.now(UTC) - timedelta(seconds=5)
    store.job_insert_many([new_job(queue="bulk", run_at=now) for _ in range(1200)], now=now)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    csrf = csrf_of(client)
    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        done = client.post(
            "/jobs/bulk",
            data={"csrf": csrf, "action": "cancel", "queue": "bulk", "confirm": "yes"},
        )
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert done.status_code == 200 and "1200" in done.text
    assert len(statements) < 40, len(statements)  # one per job before: thousands
    states = {j.state for j in store.job_list(limit=2000) if j.queue == "bulk"}
    assert states == {JobState.CANCELLED}
    retried = client.post(
        "/jobs/bulk",
        data={"csrf": csrf, "action": "retry", "queue": "bulk", "confirm": "yes"},
    )
    assert retried.status_code == 200 and "1200" in retried.text
    assert {j.state for j in store.job_list(limit=2000) if j.queue == "bulk"} == {
        JobState.REQUESTED
    }
    deleted = client.post(
        "/jobs/bulk",
        data={"csrf": csrf, "action": "delete", "queue": "bulk", "confirm": "yes"},
    )
    assert deleted.status_code == 200 and "1200" in deleted.text
    assert not [j for j in store.job_list(limit=2000) if j.queue == "bulk"]


def test_bulk_actions_skip_what_the_core_refuses_and_cancel_running_jobs(
    client: TestClient, store: Store, seeded: Seeded
) -> None:
    done, skipped = store.job_act_many(
        [seeded.waiting, seeded.running, seeded.failed, 10**9],
        Action.CANCEL,
        now=datetime.now(UTC),
    )
    assert (done, skipped) == (2, 2)
    assert store.job_get(seeded.running).state is JobState.CANCELLED  # type: ignore[union-attr]
    outcomes = [a.outcome.value for a in store.attempt_list(seeded.running)]
    assert outcomes == ["cancelled"]
