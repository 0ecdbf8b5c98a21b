"""The fixtures inside async tests (issue 22): under pytest-asyncio and anyio, the inline runner
runs an async job to completion although the test's event loop is running (asyncio.run cannot
run there), its exception reaches the test, and ``corequeue_worker.drain()`` works."""

from __future__ import annotations

import textwrap

import pytest

ASYNC_JOBS = """
import asyncio

import corequeue


@corequeue.job
async def fetch(url: str) -> dict:
    await asyncio.sleep(0.01)
    return {"url": url, "attempt": corequeue.current_job().attempt}


@corequeue.job
async def declined(order_id: int) -> None:
    await asyncio.sleep(0)
    raise ValueError(f"card declined for order {order_id}")
"""

TESTS = """
import pytest
from asyncjobs import declined, fetch

pytestmark = MARK


async def test_inline_async_job_runs(run_jobs_inline):
    handle = fetch.run_in_worker("https://example.test")
    assert handle.result == {"url": "https://example.test", "attempt": 1}


async def test_inline_async_exception_reaches_the_test(run_jobs_inline):
    with pytest.raises(ValueError, match="card declined for order 7"):
        declined.run_in_worker(7)


async def test_uncaught(run_jobs_inline):
    declined.run_in_worker(8)


async def test_drain_in_an_async_test(corequeue_worker):
    handle = fetch.run_in_worker("https://example.test/drained")
    corequeue_worker.drain()
    assert handle.refresh().result == {"url": "https://example.test/drained", "attempt": 1}
"""


@pytest.mark.parametrize(
    ("runner", "mark"), [("pytest-asyncio", "pytest.mark.asyncio"), ("anyio", "pytest.mark.anyio")]
)
def test_inline_and_drain_in_async_tests(app_dir: pytest.Pytester, runner: str, mark: str) -> None:
    app_dir.makepyfile(asyncjobs=textwrap.dedent(ASYNC_JOBS))
    if runner == "anyio":  # only the asyncio backend: trio is not installed
        app_dir.makeconftest(
            """
            import pytest

            @pytest.fixture
            def anyio_backend():
                return "asyncio"
            """
        )
    app_dir.makepyfile(test_async=textwrap.dedent(TESTS).replace("MARK", mark))
    result = app_dir.runpytest_subprocess("--corequeue-db=sqlite")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_uncaught*", "E *ValueError: card declined for order 8", "asyncjobs.py:*"]
    )
