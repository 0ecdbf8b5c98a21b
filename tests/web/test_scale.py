"""The dashboard with a big table (issue 24): searches look through a window of ids per page,
and large PostgreSQL tables count what their indexes hold exactly and estimate the rest. (The
times with 2,000,000 rows come from benchmarks/dashboard_scale.py.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from corequeue.core.states import JobState, Outcome
from corequeue.store import estimates
from corequeue.store.monitoring import Monitor
from corequeue.store.queries import Store
from corequeue.store.support import seed_history
from corequeue.web import create_app, history
from tests.conftest import empty_postgres
from tests.web.conftest import new_job, seed

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def listed(html: str) -> list[int]:
    """The job ids a history page lists, in order."""
    return [int(i) for i in re.findall(r'<td class="num"><a href="/jobs/(\d+)">', html)]


def older_link(html: str) -> str | None:
    found = re.search(r'href="/jobs(\?[^"]*)" rel="next"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def newer_link(html: str) -> str | None:
    found = re.search(r'href="/jobs(\?[^"]*)" rel="prev"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_a_search_looks_through_a_window_of_ids_and_older_goes_on_below_it(
    client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "SEARCH_WINDOW", 10)
    values = [4242 if i in (3, 25) else i for i in range(30)]
    jobs = [new_job(params={"args": [v], "kwargs": {}}, run_at=T0) for v in values]
    ids = [i.id for i in store.job_insert_many(jobs, now=T0)]

    first = client.get("/jobs?param=4242").text
    assert listed(first) == [ids[25]]
    assert f"looked through jobs {ids[20]} to {ids[29]}" in first
    assert older_link(first) == f"?param=4242&before={ids[20]}"

    middle = client.get(f"/jobs{older_link(first)}").text
    assert listed(middle) == []
    assert f"No jobs match these filters among jobs {ids[10]} to {ids[19]}." in middle
    assert older_link(middle) == f"?param=4242&before={ids[10]}"

    last = client.get(f"/jobs{older_link(middle)}").text
    assert listed(last) == [ids[3]]
    assert older_link(last) is None

    # Newer goes back up, a window at a time, from the newest job shown.
    assert newer_link(last) == f"?param=4242&after={ids[3]}"
    up = client.get(f"/jobs{newer_link(last)}").text
    assert listed(up) == []
    assert f"among jobs {ids[4]} to {ids[13]}." in up
    assert newer_link(up) == f"?param=4242&after={ids[13]}"
    assert listed(client.get(f"/jobs{newer_link(up)}").text) == []  # ids[14] to ids[23]

    # An id is found wherever it is; a name or key only among the window's ids.
    assert listed(client.get(f"/jobs?q={ids[2]}").text) == [ids[2]]
    assert listed(client.get("/jobs?q=SendEmail").text) == ids[20:][::-1]


def test_a_search_of_a_small_table_looks_through_all_of_it(
    client: TestClient, store: Store
) -> None:
    jobs = [new_job(params={"args": [4242], "kwargs": {}}, run_at=T0) for _ in range(3)]
    ids = [i.id for i in store.job_insert_many(jobs, now=T0)]

    page = client.get("/jobs?param=4242").text

    assert listed(page) == ids[::-1]
    assert "looked through" not in page and older_link(page) is None


def exact_counts(store: Store) -> dict[tuple[str, JobState], int]:
    return {(q, s): n for q, s, n in store.job_count_many()}


def test_counts_are_exact_below_the_estimate_threshold(store: Store) -> None:
    seed(store)

    stats = Monitor(store).queue_stats(now=datetime.now(UTC))

    assert not any(q.estimated for q in stats)
    found = {(q.queue, s): n for q in stats for s, n in q.counts.items()}
    assert found == exact_counts(store)


def test_a_large_postgresql_table_counts_indexed_states_exactly_and_estimates_succeeded(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.from_url(empty_postgres(postgres_url))
    try:
        seed_history(store.engine, rows=20_000, now=datetime.now(UTC))  # ANALYZEs the table
        monkeypatch.setattr(estimates, "ESTIMATE_ABOVE", 10_000)
        monitor = Monitor(store)

        stats = monitor.queue_stats(now=datetime.now(UTC))

        exact = exact_counts(store)
        assert [q.queue for q in stats] == ["q0", "q1", "q2", "q3", "q4"]
        for q in stats:
            assert q.estimated
            for state in estimates.INDEXED_STATES:
                assert q.counts.get(state, 0) == exact.get((q.queue, state), 0), (q, state)
            true = exact[(q.queue, JobState.SUCCEEDED)]
            assert abs(q.counts[JobState.SUCCEEDED] - true) <= 0.1 * true, (q, true)
        succeeded = sum(exact[(q.queue, JobState.SUCCEEDED)] for q in stats)
        kept = monitor.attempt_counts()[Outcome.SUCCEEDED]  # successes live on job rows
        assert abs(kept - succeeded) <= 0.1 * succeeded
    finally:
        store.dispose()


def test_the_overview_marks_estimated_counts(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.from_url(empty_postgres(postgres_url))
    try:
        seed_history(store.engine, rows=20_000, now=datetime.now(UTC))
        monkeypatch.setattr(estimates, "ESTIMATE_ABOVE", 10_000)
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            html = client.get("/").text
            api = client.get("/api/overview").json()
    finally:
        store.dispose()
    assert html.count("estimated from the table's statistics") == 1 + 5  # the tile, each queue
    assert [(q["queue"], q["estimated"]) for q in api["queues"]] == [
        (f"q{i}", ["succeeded"]) for i in range(5)
    ]


def test_the_job_names_are_read_by_a_skip_scan_of_finished_jobs_and_the_active_ones(
    store: Store,
) -> None:
    seeded = seed(store)

    names = Monitor(store).distinct_names()

    assert names == sorted({r.name for r in store.job_list(limit=100)})
    assert seeded.waiting and "app.jobs.SendEmail" in names


def test_a_name_page_counts_each_window_from_one_scan(store: Store) -> None:
    now = datetime.now(UTC)
    seed(store, now)
    windows = [timedelta(minutes=7, seconds=30), timedelta(hours=1)]

    found = Monitor(store).name_windows("app.jobs.SendEmail", now=now, windows=windows)

    # seed(): six SendEmail jobs, the i-th due 12 - i minutes ago, running 0.5 s.
    assert [w.finished for w in found] == [{"succeeded": 1}, {"succeeded": 6}]
    assert [w.duration.count for w in found] == [1, 6]
    assert [w.duration.p50 for w in found] == [0.5, 0.5]
