"""The claim statement is a translation of the core's claim rule (:mod:`corequeue.core.claims`):
on random sets of jobs, on SQLite and PostgreSQL, ``job_claim_many`` picks exactly the jobs the
rule calls ready, in exactly the rule's order."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from corequeue.core import claims
from corequeue.store.queries import Store
from testing.store_support import T0, claim, insert, new_job

QUEUES = ("a", "b", "c")


def expected_claim(
    store: Store, *, queues: tuple[str, ...], limit: int, now: datetime
) -> list[int]:
    """What the core's rule says a claim at ``now`` takes: read every job, filter, sort."""
    every = store.job_list(limit=10_000)
    ready = [
        j for j in every if claims.is_ready(j.state, j.run_at, j.queue, now=now, queues=queues)
    ]
    return [j.id for j in sorted(ready, key=claims.claim_key)[:limit]]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_claim_takes_what_the_core_rule_takes_in_its_order(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    now = T0 + timedelta(seconds=10)
    jobs = [
        new_job(
            queue=rng.choice(QUEUES),
            priority=rng.randint(0, 3),  # few values: many ties, broken by run_at then id
            run_at=T0 + timedelta(seconds=rng.randint(0, 20)),  # about half not due yet
        )
        for _ in range(60)
    ]
    ids = insert(store, *jobs)
    for job_id in rng.sample(ids, 8):  # some jobs that are no longer waiting
        store.job_cancel(job_id, now=T0)
    batches: list[tuple[tuple[str, ...], int]] = [
        (rng.choice([(), ("a",), ("b", "c"), ("a", "c")]), rng.randint(1, 12)) for _ in range(8)
    ]
    for queues, limit in batches:
        expected = expected_claim(store, queues=queues, limit=limit, now=now)
        taken = claim(store, now=now, limit=limit, queues=queues)
        assert [j.id for j in taken] == expected, (queues, limit)
    # Later, what was not due is: the rule and the claim still agree.
    later = now + timedelta(seconds=30)
    expected = expected_claim(store, queues=(), limit=1000, now=later)
    assert [j.id for j in claim(store, now=later, limit=1000)] == expected
