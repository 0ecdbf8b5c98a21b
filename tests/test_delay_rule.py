"""Enqueue's ``delay=`` and ``DeferJob(delay=...)`` follow one rule (corequeue.core.delays):
a naive datetime is refused with what to do, a negative delay means now. No database: enqueues
are captured, and the deferral runs through the child's own ``run_task``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corequeue import DeferJob, Job, JobParamsError, Outcome, register_job
from corequeue.core.params import encode_params
from corequeue.executor.task import Task, run_task
from corequeue.testing.capture import EnqueuedJobs

NAIVE = datetime(2030, 1, 1, 12, 0)


@register_job
class Defers(Job):
    def __init__(self, delay: Any) -> None:
        self.delay = delay

    def run(self) -> None:
        raise DeferJob(delay=self.delay)


def defer(delay: Any) -> Any:
    params = encode_params((0,), {})
    task = Task(1, "lease", "tests.test_delay_rule.Defers", params, 1, None)
    return run_task(task, lambda job: Defers(delay).run())


def test_a_naive_datetime_is_refused_at_enqueue_and_in_a_deferral() -> None:
    with EnqueuedJobs() as captured, pytest.raises(JobParamsError, match="naive datetime"):
        Defers(0).run_in_worker(delay=NAIVE)
    assert len(captured) == 0

    result = defer(NAIVE)
    assert result.outcome is Outcome.ERRORED
    assert result.error_type == "ValueError"
    assert "naive datetime: pass an aware one" in (result.error_message or "")


@pytest.mark.parametrize("delay", [-30, timedelta(seconds=-30)])
def test_a_negative_delay_means_now_at_enqueue_and_in_a_deferral(delay: Any) -> None:
    before = datetime.now(UTC)
    with EnqueuedJobs() as captured:
        Defers(0).run_in_worker(delay=delay)
    (job,) = captured.all()
    assert before <= job.run_at <= datetime.now(UTC)

    result = defer(delay)
    assert (result.outcome, result.defer_delay) == (Outcome.DEFERRED, 0.0)


def test_an_aware_datetime_in_the_past_runs_at_once_either_way() -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    with EnqueuedJobs() as captured:
        Defers(0).run_in_worker(delay=past)
    assert captured.all()[0].run_at == past
    assert defer(past).defer_delay == 0.0
