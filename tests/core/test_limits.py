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
    granted = limits.grant(jobs, {a: [0], b: []}, limit=10)
    assert [(g.id, g.chain) for g in granted] == [(1, (("c", "a", 0),)), (4, ())]
    assert [j.id for j in limits.grant(jobs, {a: [0, 1], b: [0]}, limit=2)] == [1, 2]


def test_rate_slots_are_one_per_start() -> None:
    a = (RATE, "a")
    jobs = [Candidate(1, (a,)), Candidate(2, (a,)), Candidate(3, (a,))]
    granted = limits.grant(jobs, {a: [3, 7]}, limit=10, depth=5)
    assert [(g.id, g.rates) for g in granted] == [(1, (("r", "a", 3),)), (2, (("r", "a", 7),))]


def test_jobs_join_chains_on_their_keys_up_to_the_depth() -> None:
    q, k = (CONCURRENCY, "queue:q"), (CONCURRENCY, "k")
    jobs = [Candidate(i, (q,)) for i in range(5)] + [Candidate(9, (k, q))]
    granted = limits.grant(jobs, {q: [0, 1], k: [0]}, limit=10, depth=2)
    # Two chains on the queue's two slots, two jobs each; the fifth waits; the job that also
    # needs k has no queue slot free and no chain on exactly (k, q) to join.
    assert [(g.id, g.chain) for g in granted] == [
        (0, (("c", "queue:q", 0),)),
        (1, (("c", "queue:q", 1),)),
        (2, (("c", "queue:q", 0),)),
        (3, (("c", "queue:q", 1),)),
    ]


def test_a_worker_extends_the_chains_it_holds() -> None:
    q = (CONCURRENCY, "queue:q")
    held = [(("c", "queue:q", 1),)]
    jobs = [Candidate(i, (q,)) for i in range(3)]
    granted = limits.grant(jobs, {q: []}, limit=10, held=held, depth=2)
    assert [(g.id, g.chain) for g in granted] == [(0, held[0]), (1, held[0])]
    assert limits.grant(jobs, {q: []}, limit=10, held=held) == []  # depth 0: no chains


def test_slot_freedom() -> None:
    free = limits.slot_is_free
    assert free(CONCURRENCY, holder_running=False, last_start_age=None, period=0)
    assert not free(CONCURRENCY, holder_running=True, last_start_age=1, period=0)
    assert free(RATE, holder_running=False, last_start_age=None, period=1)
    assert not free(RATE, holder_running=False, last_start_age=0.5, period=1)
    assert free(RATE, holder_running=False, last_start_age=1.0, period=1)
    # A rate slot's attempt still running: its child's start is not recorded yet.
    assert not free(RATE, holder_running=True, last_start_age=5.0, period=1)


keys = st.sampled_from([(CONCURRENCY, "a"), (CONCURRENCY, "b"), (RATE, "a"), (RATE, "c")])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.frozensets(keys, max_size=3), max_size=30),
    st.dictionaries(keys, st.integers(0, 5)),
    st.integers(1, 20),
    st.integers(0, 4),
)
def test_grant_never_runs_more_than_a_limit_at_once(
    needs: list[frozenset[tuple[str, str]]],
    free: dict[tuple[str, str], int],
    limit: int,
    depth: int,
) -> None:
    """Each concurrency key's jobs run in at most as many chains as it has free slots (one at
    a time per chain), each rate key's starts use distinct free slots, and without chains a
    job passed over had a key with no slot left at its turn (greedy, in claim order)."""
    candidates = [Candidate(i, tuple(sorted(n))) for i, n in enumerate(needs)]
    slots = {key: list(range(n)) for key, n in free.items()}
    granted = limits.grant(candidates, slots, limit=limit, depth=depth)
    assert len(granted) <= limit
    for key in {k for n in needs for k in n}:
        used = [s for g in granted for s in (*g.chain, *g.rates) if s[:2] == key]
        if key[0] == RATE:
            assert len(used) == len(set(used)) <= free.get(key, 0)
        else:
            assert set(used) <= {(*key, n) for n in range(free.get(key, 0))}
            assert all(used.count(s) <= max(depth, 1) for s in used)
    if depth:
        return
    taken = {g.id for g in granted}
    left = dict(free)
    for c in candidates:
        if c.id in taken:
            for k in c.needs:
                left[k] -= 1
        elif len(taken) < limit and all(left.get(k, 0) > 0 for k in c.needs):
            ids = [x.id for x in candidates]
            assert ids.index(c.id) > ids.index(max(taken, key=ids.index))


def test_a_chain_s_unstarted_job_goes_back_only_once_nothing_of_its_chain_runs() -> None:
    assert not limits.may_give_back(("c:queue:default:0",), {"c:queue:default:0", "x"})
    assert limits.may_give_back(("c:queue:default:0",), {"c:queue:default:1"})
    assert limits.may_give_back((), {"c:queue:default:0"})  # no chain: at once
