"""Time travel (issue 22): ``corequeue_worker.drain(until=...)`` runs what falls due by then,
delayed jobs and cron occurrences included, without waiting for the clock; so does
``run_jobs_inline.drain(until=...)`` for delayed jobs. Jobs see ``current_job().run_at`` as
scheduled."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

TRAVEL_JOBS = '''
"""Jobs that log what they saw to $TRAVEL_LOG, and a nightly schedule."""

import json
import os

import corequeue


def _log(job, **fields):
    ctx = corequeue.current_job()
    with open(os.environ["TRAVEL_LOG"], "a") as f:
        f.write(json.dumps({"job": job, "run_at": ctx.run_at.isoformat(), **fields}) + "\\n")


@corequeue.job
def remind(user_id: int) -> None:
    _log("remind", user=user_id)


@corequeue.job
def nightly_report() -> None:
    _log("nightly_report")


@corequeue.job
def flaky_at_night() -> None:
    raise RuntimeError("the report server is down")


corequeue.schedule("nightly", job=nightly_report.call(), cron="0 3 * * *")
'''

TRAVEL_TESTS = """
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from traveljobs import flaky_at_night, remind


def logged():
    with open(os.environ["TRAVEL_LOG"]) as f:
        return [json.loads(line) for line in f]


def next_3am(after):
    first = after.replace(hour=3, minute=0, second=0, microsecond=0)
    return first if first > after else first + timedelta(days=1)


def test_delays_and_cron_run_without_waiting(corequeue_worker):
    start = datetime.now(UTC)
    handle = remind.run_in_worker(7, delay=timedelta(days=2))
    corequeue_worker.drain(until=timedelta(days=1))
    assert [(e["job"], e["run_at"]) for e in logged()] == [
        ("nightly_report", next_3am(start).isoformat())
    ]
    assert handle.refresh().state == "requested"  # due in two days
    corequeue_worker.drain(until=start + timedelta(days=3))
    nights = [next_3am(start) + timedelta(days=n) for n in range(3)]
    ran = [(e["job"], datetime.fromisoformat(e["run_at"])) for e in logged()]
    assert [t for job, t in ran if job == "nightly_report"] == nights
    (reminded,) = [t for job, t in ran if job == "remind"]
    assert start + timedelta(days=2) <= reminded < start + timedelta(days=2, minutes=1)
    assert handle.refresh().state == "succeeded"


def test_a_job_that_fails_when_its_time_comes(corequeue_worker):
    flaky_at_night.run_in_worker(delay=timedelta(hours=5))
    corequeue_worker.drain(until=timedelta(hours=6))


def test_inline_delays_wait_for_the_test_to_travel(run_jobs_inline):
    handle = remind.run_in_worker(8, delay=timedelta(hours=2))
    run_jobs_inline.drain(until=timedelta(hours=1))
    assert handle.state == "requested"
    run_jobs_inline.drain(until=timedelta(hours=3))
    assert logged() == [{"job": "remind", "run_at": handle.run_at.isoformat(), "user": 8}]


def test_inline_waits_for_a_reminder_never_sent(run_jobs_inline):
    handle = remind.run_in_worker(9, delay=timedelta(days=1))
    handle.wait()
"""


def test_drain_until_travels_in_time(
    app_dir: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAVEL_LOG", str(tmp_path / "travel.log"))
    monkeypatch.setenv("COREQUEUE_UNKNOWN_JOB_TIMEOUT", "0")
    app_dir.makepyfile(traveljobs=textwrap.dedent(TRAVEL_JOBS))
    app_dir.makeconftest(
        """
        import os, pytest

        @pytest.fixture(autouse=True)
        def fresh_log():
            if os.path.exists(os.environ["TRAVEL_LOG"]):
                os.remove(os.environ["TRAVEL_LOG"])
        """
    )
    app_dir.makepyfile(test_travel=textwrap.dedent(TRAVEL_TESTS))
    result = app_dir.runpytest_subprocess("--corequeue-db=sqlite", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*corequeue_worker.drain(): 1 job(s) failed:",
            "*traveljobs.flaky_at_night()*failed after 1 attempt(s): RuntimeError: the report*",
            "*inline job * (traveljobs.remind) has not run: it waits for *",
        ]
    )
