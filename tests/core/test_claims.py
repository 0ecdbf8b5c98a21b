"""The claim rule: which waiting jobs are ready, and the order they are claimed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest

from corequeue.core import claims
from corequeue.core.states import JobState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Job(NamedTuple):
    id: int
    priority: int
    run_at: datetime


@pytest.mark.parametrize("state", [s for s in JobState if s is not JobState.REQUESTED])
def test_only_waiting_jobs_are_ready(state: JobState) -> None:
    assert not claims.is_ready(state, NOW, "default", now=NOW, queues=())
    assert claims.is_ready(JobState.REQUESTED, NOW, "default", now=NOW, queues=())


def test_a_job_is_ready_once_its_run_time_has_come() -> None:
    later = NOW + timedelta(microseconds=1)
    assert not claims.is_ready(JobState.REQUESTED, later, "default", now=NOW, queues=())
    assert claims.is_ready(JobState.REQUESTED, later, "default", now=later, queues=())


def test_a_worker_takes_only_its_queues_and_every_queue_when_it_names_none() -> None:
    ready = JobState.REQUESTED
    assert claims.is_ready(ready, NOW, "mail", now=NOW, queues=("mail", "sms"))
    assert not claims.is_ready(ready, NOW, "default", now=NOW, queues=("mail",))
    assert claims.is_ready(ready, NOW, "anything", now=NOW, queues=())


def test_claim_order_is_priority_then_run_at_then_id() -> None:
    early, late = NOW - timedelta(seconds=1), NOW
    jobs = [Job(5, 0, early), Job(4, 1, late), Job(3, 1, early), Job(2, 1, early)]
    assert [j.id for j in sorted(jobs, key=claims.claim_key)] == [2, 3, 4, 5]


def test_the_key_follows_the_declared_order() -> None:
    assert [name for name, _ in claims.CLAIM_ORDER] == ["priority", "run_at", "id"]
    assert [descending for _, descending in claims.CLAIM_ORDER] == [True, False, False]
