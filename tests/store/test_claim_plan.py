"""The claim query keeps an ordered scan of the small partial index however much finished
history piles up (PostgreSQL; the statement is the one ``Store.job_claim_many`` runs), and the
worker's periodic checks (rescue, lease checks) and its batches of endings never read that
history either."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from corequeue.core import claims
from corequeue.store.endings import ENDING_COLUMNS, FINISH_POSTGRESQL
from corequeue.store.engine import create_engine
from corequeue.store.queries import Store
from testing.store_support import T0, at, claim, insert, new_job, seeded_store

FINISHED_ROWS = 200_000
#: A backlog, due over ten minutes: the claims below run at T0 + 5 min, half of it ready.
WAITING_ROWS = 2_000


@pytest.fixture(scope="module")
def crowded_store(postgres_url: str) -> Iterator[Store]:
    """PostgreSQL with 200k finished jobs and a backlog of 2,000 waiting ones, analyzed.

    (Plans are PostgreSQL's; on SQLite claims are serialized by its write lock.)
    """
    with seeded_store(postgres_url, finished=FINISHED_ROWS, waiting=WAITING_ROWS) as store:
        yield store


@pytest.fixture(scope="module")
def as_worker(crowded_store: Store) -> Iterator[Store]:
    """The crowded database through a worker's engine (its planner settings)."""
    store = Store(create_engine(crowded_store.url, worker=True))
    try:
        yield store
    finally:
        store.dispose()


def explain(store: Store, statement: sa.Executable) -> tuple[str, list[dict[str, Any]]]:
    """EXPLAIN (not ANALYZE: nothing is claimed) the statement: its text and all plan nodes."""
    compiled = statement.compile(
        dialect=store.engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    # The raw values suit psycopg as they are (UTCDateTime passes aware datetimes through).
    return explain_sql(store, str(compiled), compiled.params)


def explain_sql(store: Store, sql: str, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """EXPLAIN (not ANALYZE) SQL as the driver runs it: its text and all plan nodes."""
    with store.engine.connect() as conn:
        text = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}", params).all())
        (plan,) = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).scalar_one()
        conn.rollback()
    nodes: list[dict[str, Any]] = []
    pending = [plan["Plan"]]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(node.get("Plans", []))
    return text, nodes


@pytest.mark.parametrize("queues", [[], ["mail"], ["mail", "default"]], ids=repr)
@pytest.mark.parametrize("limit", [1, 10, 100])
def test_the_claim_walks_the_ready_index_in_order(
    crowded_store: Store, queues: list[str], limit: int
) -> None:
    statement = crowded_store.claim_statement(
        queues=queues, limit=limit, lease="L" * 32, worker_id="w", now=at(300)
    )
    text, nodes = explain(crowded_store, statement)
    on_jobs = [n for n in nodes if n.get("Relation Name") == "corequeue_jobs"]
    scans = {(n["Node Type"], n.get("Index Name")) for n in on_jobs}
    assert ("Index Scan", "ix_corequeue_jobs_ready") in scans, text
    assert not any(n["Node Type"] == "Seq Scan" for n in on_jobs), text
    assert not any("Hash" in n["Node Type"] or n["Node Type"] == "Sort" for n in nodes), text
    assert any(n["Node Type"] == "LockRows" for n in nodes), text  # FOR UPDATE SKIP LOCKED


@pytest.mark.parametrize("among", [True, False], ids=["only-async", "all-but-async"])
@pytest.mark.parametrize("names", [("tests.Waiting",), ("app.Fetch", "app.Ping")], ids=repr)
@pytest.mark.parametrize("limit", [1, 100])
def test_a_claim_split_by_kind_still_walks_the_ready_index_in_order(
    as_worker: Store, among: bool, names: tuple[str, ...], limit: int
) -> None:
    # The name filter (name = ANY / name <> ALL) filters the rows the ordered walk of the
    # ready index meets. Only workers split claims, on their engine: with the application's
    # planner settings, statistics that say few ready jobs match (the names' share of the
    # whole table's history) would pick a bitmap scan of the ready index and a sort.
    statement = as_worker.claim_statement(
        queues=["mail", "default"],
        limit=limit,
        lease="L" * 32,
        worker_id="w",
        now=at(300),
        names=claims.Names(names, among),
    )
    text, nodes = explain(as_worker, statement)
    assert ("Index Scan", "ix_corequeue_jobs_ready") in scans_on_jobs(nodes), text
    assert not any(n[0] in ("Seq Scan", "Bitmap Heap Scan") for n in scans_on_jobs(nodes)), text
    assert not any("Hash" in n["Node Type"] or n["Node Type"] == "Sort" for n in nodes), text
    assert any(n["Node Type"] == "LockRows" for n in nodes), text
    assert ("ANY" if among else "ALL") in text, text


@pytest.mark.parametrize("among", [True, False], ids=["only-async", "all-but-async"])
def test_the_split_claim_compiles_once_with_one_array_of_names(
    as_worker: Store, among: bool
) -> None:
    # As the worker runs it (the driver's copy): the names are one parameter, not a list
    # rendered into the statement, so a new async name does not make a new statement.
    compiled = as_worker._compiled(as_worker._claim_statement(((), among)))
    assert compiled.sql.count("c_names") == 1, compiled.sql
    params = {"c_limit": 10, "c_lease": "L" * 32, "c_worker": "w", "c_now": at(300)}
    params["c_names"] = ["app.Fetch", "app.Ping"]
    text, nodes = explain_sql(as_worker, compiled.sql, compiled.defaults | params)
    assert scans_on_jobs(nodes) == {
        ("Index Scan", "ix_corequeue_jobs_ready"),
        ("Index Scan", "corequeue_jobs_pkey"),
        ("ModifyTable", None),
    }, text


def test_the_claim_on_the_crowded_table_takes_the_right_jobs(crowded_store: Store) -> None:
    (urgent,) = insert(crowded_store, new_job(priority=99), now=T0)
    first, *rest = claim(crowded_store, limit=3, now=at(300))
    assert first.id == urgent
    # Then the seeded jobs of the highest priority (i % 5 == 4) that are due earliest
    # (i % 600 == 4, so T0 + 4 s): i = 4 and i = 604, the oldest first.
    assert [(j.priority, j.run_at) for j in rest] == [(4, at(4)), (4, at(4))]
    assert [j.id - FINISHED_ROWS for j in rest] == [4, 604]


def test_the_limited_claim_looks_each_granted_id_up_by_primary_key(crowded_store: Store) -> None:
    # Half the backlog granted: a join of the id list with the table let the planner hash
    # every ready job (the state condition matches the ready index) on each claim.
    ids = ",".join(str(FINISHED_ROWS + i) for i in range(1, WAITING_ROWS, 2))
    compiled = crowded_store._limited_compiled  # as the claim runs it
    params = {"c_ids": "{" + ids + "}", "c_lease": "L" * 32, "c_worker": "w", "c_now": at(300)}
    text, nodes = explain_sql(crowded_store, compiled.sql, compiled.defaults | params)
    assert not any(n.get("Index Name") == "ix_corequeue_jobs_ready" for n in nodes), text
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), text
    assert not any("Hash" in n["Node Type"] for n in nodes), text
    assert any(n.get("Index Name") == "corequeue_jobs_pkey" for n in nodes), text
    assert any(n["Node Type"] == "LockRows" for n in nodes), text  # FOR UPDATE SKIP LOCKED


def scans_on_jobs(nodes: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    return {
        (n["Node Type"], n.get("Index Name"))
        for n in nodes
        if n.get("Relation Name") == "corequeue_jobs"
    }


def test_the_rescue_reads_the_running_jobs_index_not_the_history(as_worker: Store) -> None:
    # Every worker runs it every heartbeat: with an ORDER BY id (and the worker's "no sort"
    # setting) it walked the primary key over all 200k finished rows.
    for rescuer in (None, "the-rescuing-worker"):  # a worker leaves its own jobs out
        statement = as_worker.rescue_statement(expired_before=at(300), limit=1000, rescuer=rescuer)
        text, nodes = explain(as_worker, statement)
        assert scans_on_jobs(nodes) == {("Index Scan", "ix_corequeue_jobs_running")}, text


@pytest.mark.parametrize("engine", ["worker", "application"])
def test_a_lease_check_looks_its_jobs_up_by_primary_key(
    as_worker: Store, crowded_store: Store, engine: str
) -> None:
    # A bitmap scan of the running jobs' index would visit each of its dead entries (a
    # bitmap scan never marks them dead): one per job ever run, until VACUUM.
    store = as_worker if engine == "worker" else crowded_store
    statement = store.leases_statement(list(range(1, 1001)), lock=True)
    text, nodes = explain(store, statement)
    assert scans_on_jobs(nodes) == {("Index Scan", "corequeue_jobs_pkey")}, text


@pytest.mark.parametrize("engine", ["worker", "application"])
def test_the_cancellation_check_probes_its_jobs_by_primary_key(
    as_worker: Store, crowded_store: Store, engine: str
) -> None:
    # Twice a second, for every job handed to the worker's children (thousands when jobs are
    # fast): never a scan of the table, whose finished history grows.
    store = as_worker if engine == "worker" else crowded_store
    statement = store.leases_gone_statement(list(range(1, 4001)), "L" * 32)
    text, nodes = explain(store, statement)
    assert scans_on_jobs(nodes) == {("Index Scan", "corequeue_jobs_pkey")}, text


@pytest.mark.parametrize("engine", ["worker", "application"])
def test_a_batch_of_endings_locks_its_jobs_by_primary_key_in_ascending_id(
    as_worker: Store, crowded_store: Store, engine: str
) -> None:
    # Its rows are locked first, in the primary key's order (ascending id, no sort node),
    # so it never waits for a lower id while holding a higher one (no deadlock with an
    # enqueue clearing stale unique holders): probes by primary key, never a scan.
    store = as_worker if engine == "worker" else crowded_store
    ids = range(FINISHED_ROWS + 1, FINISHED_ROWS + 501)
    params = {name: "{}" if kind == "int" else "[]" for name, kind in ENDING_COLUMNS}
    params["id"] = "{" + ",".join(map(str, ids)) + "}"
    text, nodes = explain(store, FINISH_POSTGRESQL.bindparams(**params))
    (locking,) = [n for n in nodes if n["Node Type"] == "LockRows"]
    (scan,) = locking["Plans"]
    assert (scan["Node Type"], scan.get("Index Name")) == ("Index Scan", "corequeue_jobs_pkey")
    assert scan["Scan Direction"] == "Forward", text
    # ...all of them before the UPDATE reads a row: it waits for them in a one-time filter.
    assert any("One-Time Filter" in n for n in nodes), text
