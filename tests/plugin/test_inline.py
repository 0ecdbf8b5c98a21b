"""run_jobs_inline: jobs run at once in the test, after a real JSON round trip."""

from __future__ import annotations

import pytest


def test_inline_jobs_run_at_once_and_their_exceptions_reach_the_test(
    app_dir: pytest.Pytester,
) -> None:
    app_dir.makepyfile(
        test_inline="""
        from datetime import timedelta

        import pytest
        from corequeue import JobParamsError
        from appjobs import Add, AlwaysDefer, Boom, Chain, FailTwice, Unstorable, calls

        def test_result_after_a_json_round_trip(run_jobs_inline):
            handle = Add(2, 3, label="total").run_in_worker()
            assert handle.state == "succeeded"
            assert handle.result == {"total": 5} == handle.wait()
            assert handle.attempts == 1

        def test_exception_reaches_the_test(run_jobs_inline):
            with pytest.raises(ValueError, match="card declined"):
                Boom("card declined").run_in_worker()

        def test_uncaught_exception_fails_the_test(run_jobs_inline):
            Boom("nobody catches this").run_in_worker()

        def test_recorded_instead_of_raised(run_jobs_inline):
            run_jobs_inline.raise_errors = False
            handle = Boom("kept").run_in_worker()
            assert handle.state == "failed"
            assert isinstance(handle.error, ValueError)
            assert handle.error_message == "kept"
            assert run_jobs_inline.failed == [handle]

        def test_retries_run_at_once_up_to_the_limit(run_jobs_inline, tmp_path):
            handle = FailTwice(str(tmp_path / 'runs')).run_in_worker()
            assert handle.state == "succeeded"
            assert handle.result == 2
            assert handle.attempts == 3
            assert handle.delays == [30.0, 30.0]

        def test_out_of_retries_raises_the_last_error(run_jobs_inline):
            with pytest.raises(ValueError, match="again"):
                Boom("again").run_in_worker(retries=2)
            assert run_jobs_inline.handles[0].attempts == 3

        def test_a_delayed_job_waits_until_the_test_travels_to_its_time(run_jobs_inline):
            handle = Add(1, 1).run_in_worker(delay=3600)
            assert handle.state == "requested" and run_jobs_inline.waiting == [handle]
            assert run_jobs_inline.drain(until=timedelta(minutes=59)) == []
            assert run_jobs_inline.drain(until=timedelta(hours=1, seconds=5)) == [handle]
            assert handle.result == {"sum": 2} and run_jobs_inline.waiting == []

        def test_defer_reruns_then_stays_waiting(run_jobs_inline):
            calls.clear()
            handle = AlwaysDefer().run_in_worker()
            assert handle.state == "requested"
            assert len(calls) == 1 + run_jobs_inline.max_deferrals
            assert handle.delays == [60.0] * (1 + run_jobs_inline.max_deferrals)

        def test_counted_deferrals_fail_when_attempts_run_out(run_jobs_inline):
            run_jobs_inline.raise_errors = False
            handle = AlwaysDefer(counts=True).run_in_worker(retries=1)
            assert handle.state == "failed"
            assert handle.attempts == 2

        def test_unstorable_return_value_fails_as_in_a_worker(run_jobs_inline):
            with pytest.raises(JobParamsError, match="return value cannot be stored"):
                Unstorable().run_in_worker()

        def test_unstorable_parameter_is_refused_at_enqueue(run_jobs_inline):
            with pytest.raises(JobParamsError, match="parameter 'a'"):
                Add({1, 2}, 3).run_in_worker()

        def test_jobs_enqueued_by_jobs_run_too(run_jobs_inline):
            assert Chain(4).run_in_worker().result == "chained"
            inner = run_jobs_inline.handles[1]
            assert (inner.name, inner.queue, inner.result) == ("appjobs.Add", "math", {"sum": 5})

        def test_middleware(run_jobs_inline):
            run_jobs_inline.middleware = ["appjobs.Tag"]
            assert Add(1, 2).run_in_worker().result == {"tagged": {"sum": 3}}
        """
    )
    result = app_dir.runpytest_subprocess("-v")
    result.assert_outcomes(passed=12, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_uncaught_exception_fails_the_test FAILED*",
            "*raise ValueError(self.message)",
            "E       ValueError: nobody catches this",
            "appjobs.py:*: ValueError",
        ]
    )


def test_inline_mode_uses_the_configured_middleware(app_dir: pytest.Pytester) -> None:
    app_dir.makeconftest(
        """
        import corequeue, pytest

        @pytest.fixture(autouse=True)
        def configured(tmp_path):
            corequeue.configure(f"sqlite:///{tmp_path}/unused.sqlite3", middleware=["appjobs.Tag"])
        """
    )
    app_dir.makepyfile(
        test_mw="""
        from appjobs import Add

        def test_configured_middleware_wraps_the_job(run_jobs_inline):
            assert Add(2, 2).run_in_worker().result == {"tagged": {"sum": 4}}
        """
    )
    app_dir.runpytest_subprocess().assert_outcomes(passed=1)


def test_inline_and_enqueued_jobs_together_is_a_usage_error(app_dir: pytest.Pytester) -> None:
    app_dir.makepyfile(
        test_both="""
        def test_both(run_jobs_inline, enqueued_jobs):
            pass
        """
    )
    result = app_dir.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*run_jobs_inline and enqueued_jobs cannot be used in the same test*"]
    )
