"""Flow control in the store (corequeue.store.flow, the claim): pauses, concurrency and rate
limits per queue and per job key, on SQLite and PostgreSQL; and the claim through the limits
takes exactly what the core's rule (corequeue.core.limits.grant) takes."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

import corequeue
from corequeue import runtime
from corequeue.core import claims, limits
from corequeue.core.states import JobState, Outcome
from corequeue.store import driver, flow
from corequeue.store.queries import Store
from corequeue.store.records import ClaimedJob, NewJob
from testing.store_support import T0, at, claim, ending, insert, new_job
from tests.conftest import empty_postgres


def limited(
    key: str = "",
    *,
    concurrency: int | None = None,
    rate: tuple[int, float] | None = None,
    **fields: object,
) -> NewJob:
    job = new_job(**fields)  # type: ignore[arg-type]
    return dataclasses.replace(
        job,
        concurrency_key=limits.job_key(job.name, key) if concurrency else "",
        concurrency_limit=concurrency,
        rate_key=limits.job_key(job.name, key) if rate else "",
        rate_limit=rate,
    )


def finish(
    store: Store,
    jobs: Sequence[ClaimedJob],
    *,
    now: datetime = T0,
    outcome: Outcome = Outcome.SUCCEEDED,
) -> None:
    store.job_finish_many([ending(j, outcome, now=now) for j in jobs])


def test_a_paused_queue_is_not_claimed_and_still_takes_enqueues(store: Store) -> None:
    (a,) = insert(store, new_job(queue="mail"))
    (b,) = insert(store, new_job(queue="other"))
    store.queue_pause("mail", now=T0)
    (c,) = insert(store, new_job(queue="mail"))  # enqueues still work
    assert [j.id for j in claim(store)] == [b]
    assert claim(store) == []
    (q,) = [q for q in store.queue_list(now=at(5)) if q.name == "mail"]
    assert q.paused and q.ready == 2 and q.oldest_wait == 5.0
    store.queue_pause("mail", paused=False, now=T0)
    assert [j.id for j in claim(store)] == [a, c]


def test_a_paused_queue_is_not_claimed_through_the_limits_either(store: Store) -> None:
    insert(store, limited("t", concurrency=5, queue="mail"), new_job(queue="mail"))
    store.queue_pause("mail", now=T0)
    assert store.flow_active()
    assert claim(store) == []
    store.queue_pause("mail", paused=False, now=T0)
    assert len(claim(store)) == 2


def test_a_job_key_runs_at_most_its_limit_at_once(store: Store) -> None:
    a = insert(store, *[limited("tenant:1", concurrency=2) for _ in range(4)])
    b = insert(store, *[limited("tenant:2", concurrency=1) for _ in range(2)])
    (free,) = insert(store, new_job())
    first = claim(store)
    assert [j.id for j in first] == [a[0], a[1], b[0], free]
    assert claim(store) == []  # the rest wait
    finish(store, [j for j in first if j.id == a[0]], now=at(1))
    assert [j.id for j in claim(store, now=at(1))] == [a[2]]
    # A failed attempt that will be retried frees its slot too; the retry waits its turn.
    finish(store, [j for j in first if j.id == b[0]], now=at(2), outcome=Outcome.ERRORED)
    assert [j.id for j in claim(store, now=at(2))] == [b[1]]


def test_a_worker_runs_a_chain_of_jobs_under_one_slot(store: Store) -> None:
    """A worker holding a slot may claim more jobs of its key as a chain (they share its gates,
    and run one after another): no other worker gets one until the chain's last job ends."""
    ids = insert(store, *[limited("tenant:1", concurrency=1) for _ in range(5)])
    first = claim(store, chain_depth=3)
    assert [j.id for j in first] == ids[:3]
    assert len({j.gates for j in first}) == 1 and first[0].gates  # one chain, one gate
    assert claim(store, worker="worker-2", chain_depth=3) == []  # the slot is held
    more = claim(store, chain_depth=3)  # the same worker extends its chain
    assert [j.id for j in more] == ids[3:] and {j.gates for j in more} == {first[0].gates}
    finish(store, [*first, *more[:1]], now=at(1))
    assert claim(store, worker="worker-2", now=at(1), chain_depth=3) == []  # its last job runs
    finish(store, more[1:], now=at(2))
    assert claim(store, worker="worker-2", now=at(2), chain_depth=3) == []  # nothing left
    (late,) = insert(store, limited("tenant:1", concurrency=1))
    assert [j.id for j in claim(store, worker="worker-2", now=at(3))] == [late]


def test_a_queue_limit_of_two_makes_two_chains(store: Store) -> None:
    store.queue_configure({"mail": (2, None)}, now=T0)
    ids = insert(store, *[new_job(queue="mail") for _ in range(6)])
    taken = claim(store, chain_depth=10)
    assert [j.id for j in taken] == ids
    gates = [j.gates for j in taken]
    assert len(set(gates)) == 2 and gates[0::2] == [gates[0]] * 3  # alternating, in order
    assert claim(store, worker="worker-2", chain_depth=10) == []


def test_jobs_given_back_or_requeued_free_their_slot(store: Store) -> None:
    """A claimed job given back unstarted (shutdown), or lost with its worker and requeued,
    does not keep its slot: it (or another job of its key) is claimed again."""
    (job_id,) = insert(store, limited("k", concurrency=1))
    (job,) = claim(store)
    store.job_release_many([job], now=at(1))
    (again,) = claim(store, worker="worker-2", now=at(2))
    assert again.id == job_id
    store.job_finish_many([ending(again, Outcome.DEFERRED, now=at(3))])
    assert [j.id for j in claim(store, worker="worker-3", now=at(4))] == [job_id]


def test_a_retried_job_takes_a_slot_again(store: Store) -> None:
    (job_id,) = insert(store, limited("k", concurrency=1, retries=2))
    insert(store, limited("k", concurrency=1, run_at=at(100)))
    (job,) = claim(store)
    store.job_finish_many([ending(job, Outcome.ERRORED, now=at(1), retry_delay=0)])
    (again,) = claim(store, now=at(2))
    assert again.id == job_id and again.attempts == 2
    assert claim(store, now=at(200)) == []  # the later job waits for the retry's slot


def test_rate_limited_starts_wait_for_the_period(store: Store) -> None:
    ids = insert(store, *[limited(rate=(3, 10.0)) for _ in range(7)])
    first = claim(store, now=T0)
    assert [j.id for j in first] == ids[:3]
    finish(store, first, now=at(1))  # each started at its claim (ending's started_at)
    assert claim(store, now=at(9.9)) == []
    second = claim(store, now=at(10))
    assert [j.id for j in second] == ids[3:6]
    finish(store, second, now=at(11))
    assert [j.id for j in claim(store, now=at(20))] == ids[6:]


def test_a_rate_slot_counts_from_the_start_its_attempt_recorded(store: Store) -> None:
    """A job that started a while after its claim (queued in its child) holds its rate slot
    until a period after that start: the next start on the slot is a period after the real
    one. While the attempt runs, its start is not known yet: the slot stays taken."""
    _, b = insert(store, *[limited(rate=(1, 10.0)) for _ in range(2)])
    (job,) = claim(store, now=T0)
    assert claim(store, now=at(12)) == []  # still running
    store.job_finish_many([ending(job, Outcome.SUCCEEDED, now=at(13), started_at=at(4))])
    assert claim(store, now=at(13.9)) == []  # 10 s after its start, not its claim
    assert [j.id for j in claim(store, now=at(14))] == [b]


def test_queue_limits_hold_across_job_kinds(store: Store) -> None:
    store.queue_configure({"mail": (2, limits.Rate(3, 60.0))}, now=T0)
    ids = insert(store, *[new_job(queue="mail", name=f"tests.Job{i % 2}") for i in range(5)])
    (other,) = insert(store, new_job(queue="other"))
    first = claim(store)
    assert [j.id for j in first] == [*ids[:2], other]
    finish(store, first, now=at(1))
    assert [j.id for j in claim(store, now=at(1))] == [ids[2]]  # the rate: 3 a minute
    assert claim(store, now=at(59)) == []
    (q,) = [q for q in store.queue_list(now=at(59)) if q.name == "mail"]
    assert (q.name, q.concurrency_limit, q.rate_limit, q.running) == ("mail", 2, "3/m", 1)
    store.queue_configure({}, now=at(60))  # limits gone from the configuration
    assert [j.id for j in claim(store, now=at(60))] == ids[3:]


def test_a_smaller_limit_takes_effect(store: Store) -> None:
    insert(store, *[limited("k", concurrency=3) for _ in range(3)])
    insert(store, limited("k", concurrency=1))
    assert len(claim(store)) == 3 - 2  # the last enqueue made the limit 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_limited_claim_takes_what_the_core_rule_grants(store: Store, seed: int) -> None:
    """A model of the slots in Python, decided by core.limits.grant, against the store."""
    rng = random.Random(seed)
    keys = {f"k{i}": rng.randint(1, 3) for i in range(4)}
    rates = {f"r{i}": (rng.randint(1, 3), float(rng.choice([5, 10]))) for i in range(2)}
    q1_limit = rng.randint(2, 4)
    store.queue_configure({"q1": (q1_limit, None)}, now=T0)
    jobs: list[NewJob] = []
    for _ in range(60):
        key = rng.choice([*keys, *rates, ""])
        job = limited(
            key,
            concurrency=keys.get(key),
            rate=rates.get(key),
            queue=rng.choice(["q1", "q2"]),
            priority=rng.randint(0, 2),
        )
        jobs.append(job)
    ids = insert(store, *jobs)
    need = {}
    for job_id, job in zip(ids, jobs, strict=True):
        need[job_id] = limits.needs(
            job.queue, job.concurrency_key, job.rate_key, queue_limited={"q1": (True, False)}
        )
    running: dict[int, ClaimedJob] = {}
    rate_starts: dict[str, list[tuple[float, int]]] = {}  # (start, job id) per key
    for step in range(25):
        now = at(step * 2)
        waiting = [j for j in store.job_list(limit=1000) if j.state is JobState.REQUESTED]
        waiting.sort(key=claims.claim_key)
        free: dict[tuple[str, str], int] = {}
        for key, n in keys.items():
            held = sum(
                (limits.CONCURRENCY, limits.job_key("tests.Job", key)) in need[i] for i in running
            )
            free[(limits.CONCURRENCY, limits.job_key("tests.Job", key))] = n - held
        held_q = sum((limits.CONCURRENCY, "queue:q1") in need[i] for i in running)
        free[(limits.CONCURRENCY, "queue:q1")] = q1_limit - held_q
        for key, (n, period) in rates.items():
            # A start holds its slot for a period, and while its attempt still runs.
            recent = [
                t for t, i in rate_starts.get(key, []) if t > step * 2 - period or i in running
            ]
            free[(limits.RATE, limits.job_key("tests.Job", key))] = n - len(recent)
        size = rng.randint(1, 6)
        scanned = flow.SCAN_PAGES * max(size, flow.MIN_PAGE)
        expected = limits.grant(
            [limits.Candidate(j.id, need[j.id]) for j in waiting][:scanned],
            {key: list(range(n)) for key, n in free.items()},  # which slots does not matter
            limit=size,
        )
        taken = claim(store, now=now, limit=size)
        assert [j.id for j in taken] == [c.id for c in expected], step
        for got in taken:
            running[got.id] = got
            for kind, key in need[got.id]:
                if kind == limits.RATE:
                    rate_starts.setdefault(key.split(":")[-1], []).append((step * 2, got.id))
        done = rng.sample(sorted(running), k=len(running) // 2)
        finish(store, [running.pop(i) for i in done], now=now + timedelta(seconds=1))


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[Store]:
    """The migrated, empty PostgreSQL store (the race below needs its statement snapshots)."""
    configured = corequeue.configure(empty_postgres(postgres_url), middleware=[])
    try:
        yield configured
    finally:
        runtime.reset()


def test_a_slot_taken_after_the_slot_view_s_snapshot_is_not_granted_again(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot view reads each slot's holder through its statement's snapshot, taken before
    it locks the slot: another worker's claim that commits in between shows its job as still
    waiting, so the slot looks free. The holders of free-looking slots are read again after
    the locks; a running one keeps its slot. The race is set up by giving the limited claim
    the row such a stale slot view returns (the other worker's job, its attempt, not mine)."""
    store = postgres_store
    first, second = insert(store, *[limited("tenant:1", concurrency=1) for _ in range(2)])
    (taken,) = claim(store, worker="worker-2")  # the other worker's claim, committed
    assert taken.id == first
    with store.engine.connect() as conn:
        (stale,) = conn.execute(
            sa.text(
                "SELECT kind, key, slot, job_id, attempt, period, started_at, false "
                "FROM corequeue_limit_slots"
            )
        ).all()
    assert stale.job_id == first and stale.attempt == 1
    view_sql = store._slot_view_compiled.sql
    real_run_in = driver.run_in

    def stale_slot_view(conn: Any, compiled: driver.Compiled, params: Any) -> Any:
        if compiled.sql == view_sql:
            return [tuple(stale)]
        return real_run_in(conn, compiled, params)

    monkeypatch.setattr(driver, "run_in", stale_slot_view)
    assert claim(store, worker="worker-1") == []  # its holder runs: not free
    monkeypatch.undo()
    finish(store, [taken], now=at(1))
    assert [j.id for j in claim(store, worker="worker-1", now=at(1))] == [second]
