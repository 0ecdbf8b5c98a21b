"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

The test starts ``corequeue dashboard`` (the real command, uvicorn) on a free port, logs in with
the token, opens every page, filters the history, retries a failed job and cancels a waiting one
through the buttons (accepting the browser's confirm dialogs), and checks the database. Screenshots
of each page go to test-artifacts/; with COREQUEUE_UPDATE_SCREENSHOT=1 the overview is also saved
as docs/dashboard-overview.png for the README.

Chromium comes from testing/install_browser.sh (apt ``chromium``); Playwright's own browser
download is never used. Under CI a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from corequeue.core.states import JobState
from corequeue.store import schema
from corequeue.store.queries import Store
from tests.web.conftest import XSS, Seeded, new_job, seed, seed_history

CHROMIUM = os.environ.get("COREQUEUE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "browser-test-token"
DEADLINE = 30.0  # seconds; generous, the machine is shared


def _unavailable(reason: str) -> None:
    message = f"{reason}: run testing/install_browser.sh and pip install -e '.[test]'"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """``corequeue dashboard`` serving ``database_url`` with a token, in a subprocess."""
    yield from serve_dashboard(database_url, tmp_path)


def serve_dashboard(database_url: str, tmp_path: Path, *more: str) -> Iterator[str]:
    """The dashboard_url fixture's work, with ``more`` arguments for the command. The port is
    a free one picked here; another process may take it before the dashboard binds it (its
    bind then fails and it exits), so that case starts it again on another port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COREQUEUE_")}
    env["COREQUEUE_DASHBOARD_TOKEN"] = TOKEN
    log = tmp_path / "dashboard.log"
    for _ in range(3):
        port = free_port()
        with log.open("w") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "corequeue",
                    "dashboard",
                    "--port",
                    str(port),
                    "--database-url",
                    database_url,
                    *more,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            if _answers(process, url, log):
                yield url
                return
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    pytest.fail(f"corequeue dashboard found no free port in 3 tries: {log.read_text()}")


def _answers(process: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    """Wait for the dashboard at ``url`` to answer (True), or to exit because its port was
    taken meanwhile (False); any other exit, or no answer by the deadline, fails the test."""
    deadline = time.monotonic() + DEADLINE
    while True:
        if process.poll() is not None:
            text = log.read_text()
            if "address already in use" in text.lower():
                return False
            pytest.fail(f"corequeue dashboard exited: {text}")
        try:
            if httpx.get(url + "/login", timeout=2).status_code in (200, 401):
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("corequeue dashboard did not answer within the deadline")
        time.sleep(0.1)


def add_schedule(store: Store, seeded: Seeded) -> None:
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.schedules),
            [
                {
                    "name": "nightly-report",
                    "job": "app.jobs.NightlyReport",
                    "expression": "0 3 * * *",
                    "timezone": "Europe/Paris",
                    "first_seen_at": now - timedelta(days=3),
                    "last_occurrence": now - timedelta(hours=3),
                    "last_job_id": seeded.succeeded[0],
                    "updated_at": now,
                },
                {
                    "name": "sync-invoices",
                    "job": "app.jobs.SyncInvoice",
                    "expression": "*/15 * * * *",
                    "timezone": "UTC",
                    "first_seen_at": now - timedelta(days=1),
                    "last_occurrence": now - timedelta(minutes=4),
                    "last_job_id": seeded.failed,
                    "updated_at": now,
                },
            ],
        )


def test_dashboard_in_a_real_browser(
    browser: Any, store: Store, dashboard_url: str, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=DEADLINE * 1000)
    dialect = store.dialect
    seed_history(store)
    seeded = seed(store)
    add_schedule(store, seeded)
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(DEADLINE * 1000)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    def shot(name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{dialect}-{name}.png"), full_page=True)

    try:
        # Log in: the token is asked for, then the overview shows.
        page.goto(dashboard_url + "/")
        expect(page.locator("h1")).to_have_text("Log in")
        shot("login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Overview")
        errors.clear()  # the browser logs the login page's 401 as a failed load
        expect(page.locator(".tile.failed .tile-value")).not_to_have_text("0")
        assert page.locator("svg.chart rect.succeeded").count() >= 50
        shot("overview")
        if os.environ.get("COREQUEUE_UPDATE_SCREENSHOT") and dialect == "sqlite":
            page.screenshot(path=str(ROOT / "docs" / "dashboard-overview.png"), full_page=True)

        # It refreshes by itself: a job enqueued now shows up without a reload.
        now = datetime.now(UTC)
        store.job_insert_many([new_job(queue="fresh-queue", run_at=now)], now=now)
        expect(page.locator("#overview")).to_contain_text("fresh-queue")
        expect(page.locator("#refresh-status")).to_contain_text("live")

        # History: filter to the failed jobs of the billing queue.
        page.click("nav >> text=Jobs")
        expect(page.locator("h1")).to_have_text("Jobs")
        shot("jobs")
        page.select_option("select[name=state]", "failed")
        page.select_option("select[name=queue]", "billing")
        page.fill("input[name=job]", "app.jobs.ChargeCard")
        page.click("#filters button[type=submit]")
        expect(page).to_have_url(
            f"{dashboard_url}/jobs?state=failed&queue=billing&job=app.jobs.ChargeCard&q=&param=&from=&to="
        )
        rows = page.locator("table.jobs tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("app.jobs.ChargeCard")
        shot("jobs-filtered")

        # Open the failed job and retry it (the browser asks to confirm).
        page.click(f"table.jobs >> text={seeded.failed}")
        expect(page.locator("h1")).to_contain_text(f"Job {seeded.failed}")
        expect(page.locator("pre.traceback").last).to_contain_text("payment gateway said <b>no</b>")
        shot("job-failed")
        page.click("button:has-text('Retry')")
        expect(page.locator(".notice")).to_contain_text("sent back to wait")
        assert dialogs[-1] == f"Retry job {seeded.failed} (app.jobs.ChargeCard)?"
        retried = store.job_get(seeded.failed)
        assert retried is not None and retried.state is JobState.REQUESTED

        # Cancel a waiting job.
        page.goto(f"{dashboard_url}/jobs/{seeded.waiting}")
        page.click("button:has-text('Cancel')")
        expect(page.locator(".notice")).to_contain_text("Job cancelled")
        assert dialogs[-1].startswith(f"Cancel job {seeded.waiting}")
        cancelled = store.job_get(seeded.waiting)
        assert cancelled is not None and cancelled.state is JobState.CANCELLED

        # Parameters holding a script tag are shown as text, never run.
        page.goto(f"{dashboard_url}/jobs/{seeded.xss}")
        expect(page.locator("#params")).to_contain_text(XSS)
        assert not any(d == "1" for d in dialogs)
        shot("job-params")

        page.click("nav >> text=Schedules")
        expect(page.locator("table").first).to_contain_text("nightly-report")
        expect(page.locator("body")).to_contain_text("app.jobs.Reminder")  # delayed job
        shot("schedules")
        page.click("nav >> text=Workers")
        expect(page.locator("table")).to_contain_text("web-1")
        shot("workers")
        assert errors == [], errors
        assert dialogs == [dialogs[0], dialogs[1]]  # only our two confirmations
    finally:
        context.close()


@pytest.fixture
def readable_dashboard_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The dashboard with the job classes of testing.observed_jobs imported."""
    yield from serve_dashboard(database_url, tmp_path, "--import", "testing.observed_jobs")


def test_parameters_search_and_job_name_pages_in_a_real_browser(
    browser: Any, store: Store, readable_dashboard_url: str
) -> None:
    """Parameters decoded and named, a search by a parameter's value, a job name's page."""
    import json
    from dataclasses import replace

    from playwright.sync_api import expect

    from corequeue.core.states import Outcome
    from tests.web.conftest import run_job

    expect.set_options(timeout=DEADLINE * 1000)
    now = datetime.now(UTC)
    name = "testing.observed_jobs.ChargeOrder"
    params = {
        "args": [{"$cq": "orm", "v": {"model": "shop.models.Order", "pk": [12]}}],
        "kwargs": {"$cq": "dict", "v": {"note": "gift wrap"}},
    }
    compact = json.dumps(params, separators=(",", ":"))
    wanted = run_job(store, replace(new_job(name, run_at=now), params=compact), [Outcome.SUCCEEDED])
    other = compact.replace('"pk":[12]', '"pk":[13]')
    failed = run_job(
        store,
        replace(new_job(name, run_at=now), params=other),
        [Outcome.ERRORED],
        duration=2.0,
    )
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(DEADLINE * 1000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(readable_dashboard_url + "/login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Overview")

        # The job's page names its parameters after the class's: order=Order#12.
        page.goto(f"{readable_dashboard_url}/jobs/{wanted}")
        params_list = page.locator("#params")
        expect(params_list.locator("dt").first).to_have_text("order_id")
        expect(params_list.locator("dd").first).to_contain_text("Order#12")
        expect(params_list).to_contain_text("'gift wrap'")
        expect(params_list).not_to_contain_text("$cq")

        # Its value's "search" link lists the jobs holding that value, and only them.
        params_list.locator("dd").first.get_by_role("link", name="search").click()
        expect(page.locator("#filters input[name=param]")).to_have_value("Order#12")
        rows = page.locator("table.jobs tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(str(wanted))
        page.fill("#filters input[name=param]", "Order#13")
        page.click("#filters button[type=submit]")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(str(failed))

        # The job name's page: one of two failed, durations 0.5 s and 2 s.
        page.goto(f"{readable_dashboard_url}/jobs/{failed}")
        page.locator("#job-name").click()
        expect(page.locator("#name")).to_have_text(name)
        hour = page.locator("#windows tbody tr").first
        expect(hour).to_contain_text("50.0 %")
        expect(hour.locator("td").nth(1)).to_have_text("2")
        assert not errors, errors
    finally:
        context.close()
