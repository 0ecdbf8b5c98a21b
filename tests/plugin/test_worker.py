"""corequeue_worker.drain(): a real worker, child processes, and errors that are not swallowed."""

from __future__ import annotations

import pytest


def test_drain_runs_ready_jobs_and_reports_failures(
    app_dir: pytest.Pytester, with_postgres: str
) -> None:
    app_dir.makepyfile(
        test_drain="""
        import os
        import pytest
        from appjobs import Add, AlwaysDefer, Boom, FailTwice

        def test_drain_runs_jobs_in_child_processes(corequeue_worker):
            handles = [Add(i, i).run_in_worker() for i in range(3)]
            result = corequeue_worker.drain()
            assert [h.refresh().result for h in handles] == [{"sum": 0}, {"sum": 2}, {"sum": 4}]
            assert len(result.succeeded) == 3 and not result.failed and not result.waiting
            assert corequeue_worker.store.is_postgresql

        def test_scheduled_jobs_wait_unless_asked(corequeue_worker):
            later = Add(1, 1).run_in_worker(delay=3600)
            result = corequeue_worker.drain()
            assert result.ran == 0 and [r.id for r in result.waiting] == [later.id]
            result = corequeue_worker.drain(with_scheduled=True)
            assert later.refresh().state == "succeeded"
            assert not result.waiting

        def test_with_scheduled_runs_retries_after_their_backoff(corequeue_worker, tmp_path):
            # fails twice, retried after 30 s each time
            handle = FailTwice(str(tmp_path / 'runs')).run_in_worker()
            corequeue_worker.drain(with_scheduled=True)
            assert handle.refresh().state == "succeeded"
            assert handle.record.attempts == 3

        def test_failures_can_be_returned_instead(corequeue_worker):
            Boom("quiet").run_in_worker()
            result = corequeue_worker.drain(raise_on_failure=False)
            assert [r.error for r in result.failed] == ["ValueError: quiet"]

        def test_fails_with_the_failed_jobs(corequeue_worker):
            Add(1, 2).run_in_worker()
            Boom("card declined").run_in_worker(queue="payments")
            corequeue_worker.drain()

        def test_fails_when_a_job_never_stops_deferring(corequeue_worker):
            AlwaysDefer().run_in_worker()
            corequeue_worker.drain(with_scheduled=True, timeout=3)
        """
    )
    result = app_dir.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_with_the_failed_jobs _*",
            "E *AssertionError: corequeue_worker.drain(): 1 job(s) failed:",
            "E *job 2 appjobs.Boom('card declined') queue='payments' failed after 1 attempt(s):"
            " ValueError: card declined",
            "E *raise ValueError(self.message)",
            "E *ValueError: card declined",
            "*_ test_fails_when_a_job_never_stops_deferring _*",
            "E *AssertionError: corequeue_worker.drain() did not finish within 3s"
            " (with_scheduled=True). Still waiting:",
            "E *job 1 appjobs.AlwaysDefer() queue='default' state=*",
        ]
    )


def test_drain_on_sqlite(app_dir: pytest.Pytester) -> None:
    app_dir.makepyfile(
        test_sqlite="""
        from appjobs import Add

        def test_drain(corequeue_worker):
            handle = Add(20, 22).run_in_worker()
            corequeue_worker.drain()
            assert handle.wait(timeout=5) == {"sum": 42}
            assert corequeue_worker.store.dialect == "sqlite"
        """
    )
    app_dir.runpytest_subprocess("--corequeue-db=sqlite").assert_outcomes(passed=1)
