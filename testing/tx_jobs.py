"""Jobs that write inside ``corequeue.current_job().transaction()`` (tests/e2e/test_transaction.py,
tests/store/test_transaction.py): the double-charge scenario of issue 21.

``ProcessOrder`` writes an ``effects`` row and enqueues ``ChargeCard`` in its transaction,
then, on its first run only, misbehaves as ``how`` says: ``raise`` (an error), ``hang`` (until
its timeout, a cancel or a kill). Its first run is told apart by a marker file in ``mark_dir``
(an attempt lost with its worker runs again under the same attempt number), which it writes
once its transaction has started and holds its writes: a test waits for it.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import corequeue
import corequeue.runtime
from corequeue import Job, register_job

metadata = sa.MetaData()
effects = sa.Table(
    "tx_effects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("order_id", sa.Integer, nullable=False),
    sa.Column("note", sa.String(50), nullable=False, default=""),
)


def create_tables(url: str) -> None:
    """Create (empty) the jobs' own table in the database at ``url``."""
    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
    finally:
        engine.dispose()


def effect_rows(url: str) -> list[tuple[int, str]]:
    """(order_id, note) of every ``effects`` row, in insertion order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(effects.c.order_id, effects.c.note).order_by(effects.c.id)
            return [(r.order_id, r.note) for r in conn.execute(query)]
    finally:
        engine.dispose()


def _first_run(mark_dir: str, order_id: int) -> bool:
    return not (Path(mark_dir) / f"order-{order_id}").exists()


def _mark(mark_dir: str, order_id: int) -> None:
    (Path(mark_dir) / f"order-{order_id}").write_text(str(os.getpid()))  # who holds it


@register_job
class ChargeCard(Job):
    def __init__(self, order_id: int) -> None:
        self.order_id = order_id

    def run(self) -> int:
        return self.order_id


@register_job
class ProcessOrder(Job):
    def __init__(self, order_id: int, how: str, mark_dir: str) -> None:
        self.order_id, self.how, self.mark_dir = order_id, how, mark_dir

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> str:
        ctx = corequeue.current_job()
        assert ctx is not None
        first = _first_run(self.mark_dir, self.order_id)
        with ctx.transaction() as conn:
            conn.execute(sa.insert(effects).values(order_id=self.order_id, note="charged"))
            ChargeCard(self.order_id).run_in_worker(connection=conn)
        if first:
            _mark(self.mark_dir, self.order_id)
            misbehave(self.how)
        return "done"


@register_job
class ProcessOrderAsync(Job):
    def __init__(self, order_id: int, how: str, mark_dir: str) -> None:
        self.order_id, self.how, self.mark_dir = order_id, how, mark_dir

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    async def run(self) -> str:
        ctx = corequeue.current_job()
        assert ctx is not None
        first = _first_run(self.mark_dir, self.order_id)
        async with ctx.transaction() as conn:
            conn.execute(sa.insert(effects).values(order_id=self.order_id, note="charged"))
            ChargeCard(self.order_id).run_in_worker(connection=conn)
        if first:
            _mark(self.mark_dir, self.order_id)
            if self.how == "raise":
                raise RuntimeError("the first attempt fails after its writes")
            await asyncio.sleep(120)  # until its timeout or a cancel
        return "done"


def misbehave(how: str) -> Any:
    if how == "raise":
        raise RuntimeError("the first attempt fails after its writes")
    deadline = time.monotonic() + 120  # "hang": until its timeout, a cancel or a kill
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise AssertionError("nothing stopped the hanging attempt")


def rescue_everything() -> int:
    """What a rescuer does to the jobs of a worker that has stopped beating (here: every
    running job, none of whose workers beats): their attempts are recorded lost."""
    store = corequeue.runtime.get_store()
    ends = store.job_rescue_many(
        now=datetime.now(UTC), heartbeat_timeout=0.0, retry_delay=lambda name, attempt: 0.0
    )
    return len(ends)


@register_job
class LosesItsLease(Job):
    """Its attempt is rescued as lost while it runs: ``when`` = ``before`` it enters its
    transaction, or ``after`` its writes (PostgreSQL: on SQLite the rescue would wait for the
    transaction's write lock)."""

    def __init__(self, order_id: int, when: str) -> None:
        self.order_id, self.when = order_id, when

    def run(self) -> str:
        ctx = corequeue.current_job()
        assert ctx is not None
        if self.when == "before":
            assert rescue_everything() == 1
        with ctx.transaction() as conn:
            conn.execute(sa.insert(effects).values(order_id=self.order_id, note="charged"))
            ChargeCard(self.order_id).run_in_worker(connection=conn)
        if self.when == "after":
            assert rescue_everything() == 1
        return "done"


@register_job
class CatchesInside(Job):
    """An exception leaves its ``with`` block (rolled back), the job goes on and succeeds
    with a second transaction."""

    def __init__(self, order_id: int) -> None:
        self.order_id = order_id

    def run(self) -> str:
        ctx = corequeue.current_job()
        assert ctx is not None
        try:
            with ctx.transaction() as conn:
                conn.execute(sa.insert(effects).values(order_id=self.order_id, note="undone"))
                raise LookupError("changed its mind")
        except LookupError:
            pass
        with ctx.transaction() as conn:
            conn.execute(sa.insert(effects).values(order_id=self.order_id, note="kept"))
        return "done"
