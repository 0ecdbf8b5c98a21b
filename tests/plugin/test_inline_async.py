"""run_jobs_inline runs async jobs (``async def run``) to completion (issue 19), through the
middleware, and an async job's own exception reaches the test."""

from __future__ import annotations

import textwrap

import pytest

ASYNC_JOBS = """
import asyncio
from corequeue import Job, register_job

seen = []

@register_job
class Fetch(Job):
    def __init__(self, url):
        self.url = url

    async def run(self):
        await asyncio.sleep(0.01)
        return {"url": self.url, "status": 200}

@register_job
class Declined(Job):
    retries = 0

    async def run(self):
        await asyncio.sleep(0)
        raise ValueError("card declined")

class Around:
    def __init__(self, run_job):
        self.run_job = run_job

    def __call__(self, job):
        seen.append(type(job).__name__)
        return self.run_job(job)
"""


def test_async_jobs_run_inline_to_completion(app_dir: pytest.Pytester) -> None:
    app_dir.makepyfile(asyncjobs=textwrap.dedent(ASYNC_JOBS))
    app_dir.makepyfile(
        test_async="""
        import pytest
        from asyncjobs import Declined, Fetch, seen

        def test_awaited_and_stored(run_jobs_inline):
            handle = Fetch("https://example.test").run_in_worker()
            assert handle.state == "succeeded"
            assert handle.result == {"url": "https://example.test", "status": 200}

        def test_exception_reaches_the_test(run_jobs_inline):
            with pytest.raises(ValueError, match="card declined"):
                Declined().run_in_worker()

        def test_recorded_instead_of_raised(run_jobs_inline):
            run_jobs_inline.raise_errors = False
            handle = Declined().run_in_worker()
            assert handle.state == "failed"
            assert isinstance(handle.error, ValueError)

        def test_through_middleware(run_jobs_inline):
            run_jobs_inline.middleware = ["asyncjobs.Around"]
            assert Fetch("x").run_in_worker().result["status"] == 200
            assert seen == ["Fetch"]
        """
    )
    result = app_dir.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
