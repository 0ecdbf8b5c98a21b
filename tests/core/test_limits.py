"""The flow-control rule (corequeue.core.limits): rates, keys, which candidates a claim starts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corequeue.core import limits
from corequeue.core.limits import CONCURRENCY, RATE, Candidate


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("10/s", 10, 1.0),
        ("100/m", 100, 60.0),
        ("5/2h", 5, 7200.0),
        ("3/0.5s", 3, 0.5),
        ("1/d", 1, 86400.0),
    ],
)
def test_rates_parse(text: str, count: int, period: float) -> None:
    rate = limits.parse_rate(text)
    assert (rate.count, rate.period) == (count, period)


@pytest.mark.parametrize("text", ["", "10", "0/s", "10/0s", "x/s", "10/w", 10, None, "99999/s"])
def test_bad_rates_are_refused_with_the_form_to_use(text: object) -> None:
    with pytest.raises(limits.LimitError, match="rate_limit"):
        limits.parse_rate(text)


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "3", limits.MAX_LIMIT + 1])
def test_bad_concurrency_limits_are_refused(value: object) -> None:
    with pytest.raises(limits.LimitError, match="concurrency_limit"):
        limits.check_concurrency(value)


def test_rates_print_as_written() -> None:
    assert str(limits.Rate(10, 1.0)) == "10/s"
    assert str(limits.Rate(100, 60.0)) == "100/m"
    assert str(limits.Rate(3, 0.5)) == "3/0.5s"


def test_a_job_needs_its_own_keys_and_its_limited_queues() -> None:
    assert limits.needs("q", "", "", queue_limited={}) == ()
    assert limits.needs("q", "job:a:t1", "", queue_limited={"q": (True, False)}) == (
        (CONCURRENCY, "job:a:t1"),
        (CONCURRENCY, "queue:q"),
    )
    assert limits.needs("q", "", "job:a", queue_limited={"q": (False, True)}) == (
        (RATE, "job:a"),
        (RATE, "queue:q"),
    )


def test_grant_passes_over_jobs_over_a_limit_and_keeps_claim_order() -> None:
    a, b = (CONCURRENCY, "a"), (CONCURRENCY, "b")
    jobs = [Candidate(1, (a,)), Candidate(2, (a,)), Candidate(3, (b,)), Candidate(4, ())]
    granted = limits.grant(jobs, {a: 1, b: 0}, limit=10)
    assert [j.id for j in granted] == [1, 4]
    assert [j.id for j in limits.grant(jobs, {a: 2, b: 1}, limit=2)] == [1, 2]


def test_assign_gives_distinct_free_slots() -> None:
    a = (RATE, "a")
    jobs = [Candidate(1, (a,)), Candidate(2, (a,))]
    assert limits.assign(jobs, {a: [3, 7]}) == [(1, "r", "a", 3), (2, "r", "a", 7)]


def test_slot_freedom() -> None:
    free = limits.slot_is_free
    assert free(
        CONCURRENCY, holder_running=False, holder_claim_pending=False, last_start_age=None, period=0
    )
    assert not free(
        CONCURRENCY, holder_running=True, holder_claim_pending=False, last_start_age=1, period=0
    )
    assert not free(
        CONCURRENCY, holder_running=False, holder_claim_pending=True, last_start_age=1, period=0
    )
    assert free(
        RATE, holder_running=True, holder_claim_pending=False, last_start_age=None, period=1
    )
    assert not free(
        RATE, holder_running=False, holder_claim_pending=False, last_start_age=0.5, period=1
    )
    assert free(
        RATE, holder_running=False, holder_claim_pending=False, last_start_age=1.0, period=1
    )


keys = st.sampled_from([(CONCURRENCY, "a"), (CONCURRENCY, "b"), (RATE, "a"), (RATE, "c")])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.frozensets(keys, max_size=3), max_size=30),
    st.dictionaries(keys, st.integers(0, 5)),
    st.integers(1, 20),
)
def test_grant_never_uses_more_slots_than_are_free(
    needs: list[frozenset[tuple[str, str]]], free: dict[tuple[str, str], int], limit: int
) -> None:
    candidates = [Candidate(i, tuple(sorted(n))) for i, n in enumerate(needs)]
    granted = limits.grant(candidates, free, limit=limit)
    assert len(granted) <= limit
    for key in {k for n in needs for k in n}:
        assert sum(key in g.needs for g in granted) <= free.get(key, 0)
    # Greedy in claim order: a job passed over had a key with no slot left at its turn.
    taken = {g.id for g in granted}
    left = dict(free)
    for c in candidates:
        if c.id in taken:
            for k in c.needs:
                left[k] -= 1
        elif len(taken) < limit and all(left.get(k, 0) > 0 for k in c.needs):
            ids = [x.id for x in candidates]
            assert ids.index(c.id) > ids.index(max(taken, key=ids.index))
