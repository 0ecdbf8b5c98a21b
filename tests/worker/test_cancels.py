"""The worker's check for running jobs that no longer run under their lease
(worker.cancels): its answer applies only to the jobs still running under the lease it
checked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corequeue.core.states import JobState
from corequeue.worker.cancels import LeaseCheck


class _Store:
    is_postgresql = False  # the check runs inline: its outcome is there at once

    def __init__(self, gone: dict[int, JobState | None]) -> None:
        self.gone = gone
        self.asked: list[Sequence[tuple[int, str]]] = []

    def job_leases_gone_many(self, pairs: Sequence[tuple[int, str]]) -> dict[int, Any]:
        self.asked.append(pairs)
        return {i: state for i, state in self.gone.items() if (i, "old") in pairs}


def test_a_gone_lease_stops_only_the_attempt_that_was_checked() -> None:
    store: Any = _Store({1: JobState.CANCELLED, 2: JobState.CANCELLED, 3: None})
    check = LeaseCheck(store)
    try:
        check.start_if_due(lambda: [(1, "old"), (2, "old"), (3, "old")])
        # Meanwhile job 2 ended, and job 3 was claimed again under a new lease.
        gone = check.take(lambda: [(1, "old"), (3, "new")])
        assert gone == {1: JobState.CANCELLED}
        assert check.take(lambda: [(1, "old")]) is None  # taken once

        check.start_if_due(lambda: [(1, "old")])  # not due again yet: no second query
        assert len(store.asked) == 1
    finally:
        check.close()
