"""The worker's statements on running jobs find them by primary key whatever the planner's
statistics say and whichever plan a prepared statement gets (PostgreSQL): a batch of endings
does work in proportion to the batch, and the limited claim's slot look-up reads each slot's
holder by its id.

The case that broke it: ANALYZE (autovacuum runs it after every few thousand changes) saw
few running jobs, and the worker then ended a batch of 1,500. The planner, told that one job
was running, joined the batch with the running jobs' partial index and compared every running
row with every ending: 2.25 million comparisons for one batch (the drains it slowed are in
benchmarks/README.md). The work is counted from EXPLAIN ANALYZE's row counts (rows read and
rows thrown away, across loops), not timed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from corequeue.core.states import Outcome
from corequeue.store.driver import compile_statement
from corequeue.store.endings import FINISH_POSTGRESQL, _ending_params
from corequeue.store.engine import create_engine
from corequeue.store.flow_sql import slot_view_statement
from corequeue.store.queries import Store
from testing.store_support import at, claim, ending, seeded_store

HISTORY_ROWS = 50_000
WAITING_ROWS = 4_000
BATCH = 1_500
#: Rows a sound plan touches per ending in the lock and the update: its lock, its look-up, its
#: join, its update (about 9 in all); a scan of the table is 35 here (53,000 rows for 1,500
#: endings), and a comparison of every ending with every running job 1,500.
ROWS_PER_ENDING = 20


@pytest.fixture(scope="module")
def busy_store(postgres_url: str) -> Iterator[Store]:
    """50k finished jobs and 4,000 waiting ones (half of them ready at T0 + 5 min), analyzed
    while none ran."""
    with seeded_store(postgres_url, finished=HISTORY_ROWS, waiting=WAITING_ROWS) as store:
        yield store


@pytest.fixture(scope="module")
def batch_params(busy_store: Store) -> dict[str, str]:
    """The parameters of one batch: BATCH claimed jobs ending in success."""
    claimed = claim(busy_store, limit=BATCH, now=at(300))
    assert len(claimed) == BATCH
    return _ending_params(
        [ending(job, Outcome.SUCCEEDED, now=at(301), result="null") for job in claimed]
    )


def rows_touched(plan: dict[str, Any]) -> int:
    """Rows the job rows' lock and update (the CTEs ``locked`` and ``done``) produced or threw
    away, every node over all its loops; the batch's decoding (``v``) is the same in any plan."""
    total = 0
    stack: list[tuple[dict[str, Any], bool]] = [(plan, False)]
    while stack:
        node, inside = stack.pop()
        inside = inside or node.get("Subplan Name") in ("CTE done", "CTE locked")
        if inside:
            per_loop = (
                node.get("Actual Rows", 0)
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Join Filter", 0)
            )
            total += per_loop * node.get("Actual Loops", 1)
        stack.extend((child, inside) for child in node.get("Plans", []))
    return int(total)


def explain_prepared(
    conn: sa.Connection, sql: str, params: dict[str, str], plan_mode: str, *, analyze: bool
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE when ``analyze``: it runs) ``sql`` (psycopg's %(name)s placeholders)
    as a prepared statement under ``plan_mode``, on ``conn`` in its transaction; its plan."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, sql)
    args = ", ".join("'" + params[name].replace("'", "''") + "'" for name in names)
    conn.exec_driver_sql(f"SET plan_cache_mode = {plan_mode}")
    # No parameters passed: the driver sends both texts as they are.
    conn.exec_driver_sql(f"PREPARE explained AS {text}")
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    (plan,) = conn.exec_driver_sql(f"EXPLAIN ({options}) EXECUTE explained({args})").scalar_one()
    conn.exec_driver_sql("DEALLOCATE explained")  # not undone by a rollback
    result: dict[str, Any] = plan["Plan"]
    return result


@pytest.mark.parametrize("engine", ["worker", "application"])
@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
def test_a_batch_of_endings_touches_rows_in_proportion_to_the_batch(
    busy_store: Store, batch_params: dict[str, str], engine: str, plan_mode: str
) -> None:
    # psycopg prepares a statement after its fifth run on a connection, and PostgreSQL may
    # then keep a generic plan (made without the batch's values): both must be sound.
    store = busy_store
    if engine == "worker":  # the worker's own connections (its planner settings)
        store = Store(create_engine(busy_store.url, worker=True))
    compiled = compile_statement(store.engine.dialect, FINISH_POSTGRESQL)
    try:
        with store.engine.connect() as conn:
            plan = explain_prepared(conn, compiled.sql, batch_params, plan_mode, analyze=True)
            updated = conn.exec_driver_sql(
                "SELECT count(*) FROM corequeue_jobs WHERE state = 'succeeded'"
            ).scalar_one()
            conn.rollback()  # EXPLAIN ANALYZE ran the batch: the next case gets the same one
    finally:
        if store is not busy_store:
            store.dispose()
    assert plan["Actual Rows"] == BATCH  # every ending applied...
    assert updated == HISTORY_ROWS + BATCH
    touched = rows_touched(plan)
    assert touched <= ROWS_PER_ENDING * BATCH, (touched, plan)  # ...at a cost per ending


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
def test_the_slot_look_up_reads_each_holder_by_primary_key(
    busy_store: Store, batch_params: dict[str, str], plan_mode: str
) -> None:
    # A limited claim reads its keys' slots with the job holding each. With the holder's
    # state in the condition, the planner (told one job ran) scanned the running jobs'
    # index for every slot: a per-key drain took 3x the database's time.
    compiled = compile_statement(busy_store.engine.dialect, slot_view_statement(postgresql=True))
    params = {"v_keys": "{" + ",".join(f"k{i}" for i in range(100)) + "}", "v_worker": "w"}
    values = {k: str(v) for k, v in compiled.defaults.items()} | params | {"v_now": str(at(400))}
    with busy_store.engine.connect() as conn:
        plan = explain_prepared(conn, compiled.sql, values, plan_mode, analyze=False)
        conn.rollback()
    holders, pending = [], [plan]
    while pending:
        node = pending.pop()
        if node.get("Relation Name") == "corequeue_jobs":
            holders.append((node["Node Type"], node.get("Index Name")))
        pending.extend(node.get("Plans", []))
    assert holders, plan
    assert set(holders) == {("Index Scan", "corequeue_jobs_pkey")}, plan
