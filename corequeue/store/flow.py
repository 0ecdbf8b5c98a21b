"""Flow control's state and its claim: paused queues, queue limits, and the limit slots
(:mod:`corequeue.core.limits` states the rule; this module translates it).

The plain claim statement (:mod:`corequeue.store.claims`) never takes a job of a paused queue
nor one under a limit. Once any limit exists (a slot row), claims go through
:meth:`FlowQueries._claim_limited`: one transaction that locks the ready candidates and the
free slots they need (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite writers are
serialised), lets :func:`corequeue.core.limits.grant` decide, and writes the slots and the
claims.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from corequeue.core import claims, limits
from corequeue.core.states import JobState
from corequeue.store import driver, flow_sql, schema
from corequeue.store.base import StoreBase
from corequeue.store.records import NewJob
from corequeue.store.rows import NOTIFY_CHANNEL, jobs

queues_t, slots, attempts = schema.queues, schema.limit_slots, schema.attempts

#: How long a store trusts its answer to "does any limit exist" (seconds).
FLOW_CHECK_EVERY = 1.0
#: That question: a limit exists while it has a slot.
_ANY_SLOT = sa.select(slots.c.slot).limit(1)
#: A limited claim reads ready jobs a page at a time (pages as large as the claim, at least
#: :data:`MIN_PAGE`), at most :data:`SCAN_PAGES` pages: jobs over a limit are passed over, not
#: waited on.
MIN_PAGE, SCAN_PAGES = 50, 4


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue as ``queues list`` shows it."""

    name: str
    paused: bool
    concurrency_limit: int | None
    rate_limit: str | None
    ready: int
    scheduled: int
    running: int
    oldest_wait: float | None  # seconds the oldest ready job has waited


@dataclass(frozen=True, slots=True)
class QueueState:
    """A queue's flow-control state alone (no counts)."""

    name: str
    paused: bool
    concurrency_limit: int | None
    rate_limit: str | None


@dataclass(frozen=True, slots=True)
class Ask:
    """A claim through the limits: its queues (none: every queue), how many jobs at most, how
    many a chain may take (0: no chains), when, by which worker, and of which job names
    (None: any)."""

    queues: tuple[str, ...]
    limit: int
    depth: int
    now: datetime
    worker_id: str
    names: claims.Names | None = None


#: The ready jobs a limited claim reads: of queues (none: every queue), not of queues, and
#: only the names given (True), all but them (False) or any (None).
ReadyKey = tuple[tuple[str, ...], tuple[str, ...], bool | None]


@dataclass(frozen=True, slots=True)
class SlotView:
    """The slots a claim may use: the free slot numbers per (kind, key), and the concurrency
    slots of the claiming worker's chains, by the chain's last job (its holder)."""

    free: dict[tuple[str, str], list[int]]
    held: dict[int, list[limits.Slot]]


class SlotRow(NamedTuple):
    """A slot as the slot view (:func:`corequeue.store.flow_sql.slot_view_statement`) reads it."""

    kind: str
    key: str
    slot: int
    job_id: int | None
    attempt: int | None
    period: float | None
    started_at: datetime | None
    mine: bool


@dataclass(frozen=True, slots=True)
class SlotNeed:
    """A set of slots jobs being enqueued need to exist: ``count`` of them under (kind, key)."""

    kind: str
    key: str
    count: int
    period: float | None = None


def unlimited_clause() -> sa.ColumnElement[bool]:
    """The plain claim's extra condition: not a job under a limit, not a paused queue's."""
    held = sa.select(queues_t.c.name).where(
        sa.or_(
            queues_t.c.paused,
            queues_t.c.concurrency_limit.is_not(None),
            queues_t.c.rate_count.is_not(None),
        )
    )
    return sa.and_(
        jobs.c.concurrency_key == "",
        jobs.c.rate_key == "",
        jobs.c.queue.not_in(held.scalar_subquery()),
    )


def resize_slots(conn: Connection, need: SlotNeed, *, postgresql: bool) -> None:
    """Make (kind, key) have exactly ``need.count`` slots (0 to n - 1), with its period."""
    where = sa.and_(slots.c.kind == need.kind, slots.c.key == need.key)
    conn.execute(sa.delete(slots).where(where, slots.c.slot >= need.count))
    if need.count <= 0:
        return
    rows = [
        {"kind": need.kind, "key": need.key, "slot": n, "period": need.period}
        for n in range(need.count)
    ]
    insert = pg_insert if postgresql else sqlite_insert
    stmt = insert(slots).on_conflict_do_update(
        index_elements=["kind", "key", "slot"], set_={"period": insert(slots).excluded.period}
    )
    conn.execute(stmt, rows)


def job_slot_needs(new_jobs: Sequence[NewJob]) -> list[SlotNeed]:
    """The slots the limits of jobs being enqueued need (none for jobs without limits)."""
    out: dict[tuple[str, str], SlotNeed] = {}
    for job in new_jobs:
        if job.concurrency_key and job.concurrency_limit:
            key = (limits.CONCURRENCY, job.concurrency_key)
            out[key] = SlotNeed(*key, job.concurrency_limit)
        if job.rate_key and job.rate_limit:
            key = (limits.RATE, job.rate_key)
            out[key] = SlotNeed(*key, job.rate_limit[0], job.rate_limit[1])
    return list(out.values())


class FlowQueries(StoreBase):
    """Pausing queues, their limits, limit slots, and the limited claim."""

    _flow_checked_at = -1e9
    _flow_active = False

    # -- queues -------------------------------------------------------------------------------

    def queue_pause(self, name: str, *, paused: bool = True, now: datetime) -> None:
        """Pause (or resume) a queue for every worker: its waiting jobs wait, running ones
        finish; enqueues still work. Resuming wakes the workers (PostgreSQL NOTIFY)."""
        with self._errors(), self._begin() as conn:
            self._upsert_queue(conn, name, {"paused": paused, "updated_at": now})
            if self.is_postgresql and not paused:
                conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, name)))

    def queue_configure(
        self,
        configured: Mapping[str, tuple[int | None, limits.Rate | None]],
        *,
        now: datetime,
    ) -> None:
        """Make the queues' limits the configured ones (``[tool.corequeue.queue.NAME]``): set
        those of ``configured``, clear those of every other queue. Pauses are kept."""
        with self._errors(), self._begin() as conn:
            known = {r[0] for r in conn.execute(sa.select(queues_t.c.name))}
            for name in known - set(configured):
                cleared = {"concurrency_limit": None, "rate_count": None, "rate_period": None}
                conn.execute(sa.update(queues_t).where(queues_t.c.name == name).values(cleared))
                for kind in (limits.CONCURRENCY, limits.RATE):
                    self._slots_resize(conn, SlotNeed(kind, limits.queue_key(name), 0))
            for name, (concurrency, rate) in configured.items():
                values: dict[str, Any] = {
                    "concurrency_limit": concurrency,
                    "rate_count": rate.count if rate else None,
                    "rate_period": rate.period if rate else None,
                    "updated_at": now,
                }
                self._upsert_queue(conn, name, values)
                key = limits.queue_key(name)
                self._slots_resize(conn, SlotNeed(limits.CONCURRENCY, key, concurrency or 0))
                rate_need = SlotNeed(limits.RATE, key, rate.count, rate.period) if rate else None
                self._slots_resize(conn, rate_need or SlotNeed(limits.RATE, key, 0))
        self._flow_checked_at = -1e9

    def _upsert_queue(self, conn: Connection, name: str, values: dict[str, Any]) -> None:
        row = {"name": name, "paused": False, "updated_at": values.get("updated_at")} | values
        insert = pg_insert if self.is_postgresql else sqlite_insert
        stmt = insert(queues_t).values(row)
        conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))

    def queue_states(self) -> dict[str, QueueState]:
        """Every queue with a stored state (paused, limits), by name."""
        with self._errors(), self.read() as conn:
            rows = conn.execute(sa.select(queues_t).order_by(queues_t.c.name)).all()
        return {
            r.name: QueueState(
                r.name,
                bool(r.paused),
                r.concurrency_limit,
                None if r.rate_count is None else str(limits.Rate(r.rate_count, r.rate_period)),
            )
            for r in rows
        }

    def queue_list(self, *, now: datetime) -> list[QueueInfo]:
        """Every queue with jobs or state, by name."""
        waiting = jobs.c.state == JobState.REQUESTED.value
        counts = (
            sa.select(
                jobs.c.queue,
                sa.func.count().filter(sa.and_(waiting, jobs.c.run_at <= now)),
                sa.func.count().filter(sa.and_(waiting, jobs.c.run_at > now)),
                sa.func.count().filter(jobs.c.state == JobState.RUNNING.value),
                sa.func.min(jobs.c.run_at).filter(sa.and_(waiting, jobs.c.run_at <= now)),
            )
            .where(jobs.c.state.in_([JobState.REQUESTED.value, JobState.RUNNING.value]))
            .group_by(jobs.c.queue)
        )
        with self._errors(), self.read() as conn:
            by_queue = {r[0]: r[1:] for r in conn.execute(counts)}
            states = {r.name: r for r in conn.execute(sa.select(queues_t))}
        out = []
        for name in sorted(set(by_queue) | set(states)):
            ready, scheduled, running, oldest = by_queue.get(name, (0, 0, 0, None))
            state = states.get(name)
            rate = None
            if state is not None and state.rate_count is not None:
                rate = str(limits.Rate(state.rate_count, state.rate_period))
            if isinstance(oldest, str):  # SQLite returns min() of the column as text
                oldest = datetime.fromisoformat(oldest)
            wait = None
            if oldest is not None:
                oldest = schema.UTCDateTime().process_result_value(oldest, self.engine.dialect)
                assert oldest is not None
                wait = max(0.0, (now - oldest).total_seconds())
            out.append(
                QueueInfo(
                    name=name,
                    paused=bool(state.paused) if state is not None else False,
                    concurrency_limit=state.concurrency_limit if state is not None else None,
                    rate_limit=rate,
                    ready=ready,
                    scheduled=scheduled,
                    running=running,
                    oldest_wait=wait,
                )
            )
        return out

    # -- slots --------------------------------------------------------------------------------

    def _slots_resize(self, conn: Connection, need: SlotNeed) -> None:
        resize_slots(conn, need, postgresql=self.is_postgresql)
        self._flow_active = self._flow_active or need.count > 0

    def flow_active(self) -> bool:
        """Whether any limit exists (checked at most once per :data:`FLOW_CHECK_EVERY`)."""
        clock = time.monotonic()
        if clock - self._flow_checked_at >= FLOW_CHECK_EVERY:
            if self._driver is not None:  # one round trip (no BEGIN, no ROLLBACK), prepared
                with self._errors():
                    found = bool(self._driver_run(self._any_slot_compiled, {}))
            else:
                with self._errors(), self.read() as conn:
                    found = conn.execute(_ANY_SLOT).first() is not None
            self._flow_active = found
            self._flow_checked_at = clock
        return self._flow_active

    @functools.cached_property
    def _any_slot_compiled(self) -> driver.Compiled:
        return self._compiled(_ANY_SLOT)

    # -- the limited claim --------------------------------------------------------------------

    @functools.cached_property
    def _slot_view_compiled(self) -> driver.Compiled:
        return self._compiled(flow_sql.slot_view_statement(postgresql=True))

    @functools.cached_property
    def _busy_compiled(self) -> driver.Compiled:
        return self._compiled(flow_sql.BUSY_POSTGRESQL)

    @functools.cached_property
    def _slot_writes_compiled(self) -> driver.Compiled:
        return self._compiled(flow_sql.SLOT_WRITES_POSTGRESQL)

    @functools.cached_property
    def _ready_compiled(self) -> dict[ReadyKey, driver.Compiled]:
        return {}

    def _slot_view(self, conn: Connection, keys: set[tuple[str, str]], ask: Ask) -> SlotView:
        """The slots of ``keys`` this claim may use, locked: the free ones and the ones of the
        claiming worker's chains (``limits.slot_is_free``, as SQL).

        On PostgreSQL the rows are locked (``FOR UPDATE SKIP LOCKED``, the candidates only),
        and the holders of the ones that look free read again in a second statement: that one
        sees every claim committed before the locks were taken, so a slot another claim took
        meanwhile is not seen free through an older snapshot. (A slot of the worker's own
        chain needs no second look: only its own claims move it.)"""
        params: dict[str, Any] = {"v_keys": sorted({k for _, k in keys}), "v_worker": ask.worker_id}
        params["v_now"] = ask.now
        if self.is_postgresql:  # compiled once; rows as the driver gives them
            found: Any = driver.run_in(conn, self._slot_view_compiled, params)
        else:
            found = conn.execute(flow_sql.slot_view_statement(postgresql=False), params)
        rows = [SlotRow(*r) for r in found if (r[0], r[1]) in keys]
        look = [r.job_id for r in rows if r.kind == limits.CONCURRENCY and r.job_id and not r.mine]
        busy: set[tuple[int, int]] = set()  # (job id, attempt) running: taken meanwhile
        if look and self.is_postgresql:
            ids = "{" + ",".join([str(job_id) for job_id in sorted(set(look))]) + "}"
            found = driver.run_in(conn, self._busy_compiled, {"b_ids": ids})
            busy = {(job_id, attempt) for job_id, attempt in found}
        elif look:
            read = sa.select(jobs.c.id, jobs.c.attempts).where(  # running: holds a lease
                jobs.c.id.in_(sorted(set(look))), jobs.c.lease.is_not(None)
            )
            busy = {(job_id, attempt) for job_id, attempt in conn.execute(read)}
        rated = self._rate_slots_free(conn, [r for r in rows if r.kind == limits.RATE], ask.now)
        view = SlotView({}, {})
        for r in rows:
            key = (r.kind, r.key)
            view.free.setdefault(key, [])
            if r.kind == limits.RATE:
                if (r.key, r.slot) in rated:
                    view.free[key].append(r.slot)
            elif r.mine and r.job_id is not None:
                view.held.setdefault(r.job_id, []).append((r.kind, r.key, r.slot))
            elif (r.job_id, r.attempt) not in busy:
                view.free[key].append(r.slot)
        return view

    def _rate_slots_free(
        self, conn: Connection, rows: Sequence[Any], now: datetime
    ) -> set[tuple[str, int]]:
        """(key, slot) of the rate slots among ``rows`` (a period past their claim) that are
        free: a period past the start their attempt recorded (its child's, once it ended; the
        claim's if it never started), as ``limits.slot_is_free`` says."""
        ids = sorted({r.job_id for r in rows if r.job_id is not None})
        holders: dict[int, Any] = {}
        tries: dict[tuple[int, int], datetime | None] = {}
        if ids:
            read = sa.select(jobs.c.id, jobs.c.state, jobs.c.attempts, jobs.c.started_at)
            holders = {h.id: h for h in conn.execute(read.where(jobs.c.id.in_(ids)))}
            tried = sa.select(attempts.c.job_id, attempts.c.attempt, attempts.c.started_at)
            for job_id, attempt, started in conn.execute(tried.where(attempts.c.job_id.in_(ids))):
                tries[(job_id, attempt)] = started
        free = set()
        for r in rows:
            holder: Any = holders.get(r.job_id)
            own = holder is not None and holder.attempts == r.attempt
            running = own and holder.state == JobState.RUNNING.value
            start = tries.get((r.job_id, r.attempt)) or (own and holder.started_at) or r.started_at
            age = None if start is None else (now - start).total_seconds()
            if limits.slot_is_free(
                limits.RATE, holder_running=running, last_start_age=age, period=r.period or 0.0
            ):
                free.add((r.key, r.slot))
        return free

    def _claim_limited(self, conn: Connection, ask: Ask) -> list[limits.Granted]:
        """What a limited claim takes, in claim order, and the slots each job takes."""
        states = conn.execute(sa.select(queues_t)).all()
        paused = [q.name for q in states if q.paused]
        queue_limited = {
            q.name: (q.concurrency_limit is not None, q.rate_count is not None) for q in states
        }
        queue_keys = {
            (kind, limits.queue_key(q.name))
            for q in states
            for kind, on in ((limits.CONCURRENCY, q.concurrency_limit), (limits.RATE, q.rate_count))
            if on is not None
        }
        # The queues' own slots first: a queue with none this claim may use is not scanned.
        view = self._slot_view(conn, queue_keys, ask) if queue_keys else SlotView({}, {})
        mine = {s[:2] for chain in view.held.values() for s in chain}
        full = {
            key[len("queue:") :]
            for kind, key in queue_keys
            if not view.free.get((kind, key)) and (kind, key) not in mine
        }
        # Not locked: locking every candidate costs a row write each; the claim's UPDATE
        # takes only the granted ones still waiting, and only those write their slots.
        among = None if ask.names is None else ask.names.among
        ready = (ask.queues, tuple(sorted(set(paused) | full)), among)
        return self._scan(conn, ready, queue_limited, view, ask)

    def _ready_page(self, conn: Connection, ready: ReadyKey, params: Any) -> Sequence[Any]:
        """A page of ready jobs (id, queue and limit keys) in claim order: of the queues
        ``ready[0]`` (none: every queue) but not of ``ready[1]``, ``r_limit`` from ``r_offset``
        (with ``ready[2]`` not None, of the names ``r_names`` let through). On PostgreSQL the
        statement is compiled once per key."""
        if not self.is_postgresql:
            return conn.execute(flow_sql.ready_statement(*ready), params).all()
        compiled = self._compiled_in(
            self._ready_compiled, ready, lambda: flow_sql.ready_statement(*ready, postgresql=True)
        )
        return driver.run_in(conn, compiled, params)

    def _scan(
        self,
        conn: Connection,
        ready: ReadyKey,
        queue_limited: Mapping[str, tuple[bool, bool]],
        view: SlotView,
        ask: Ask,
    ) -> list[limits.Granted]:
        """Read ready jobs a page at a time, in claim order, while a page still adds grants
        (at most :data:`SCAN_PAGES` pages); ``view`` gains the slots of the job keys met."""
        limit = ask.limit
        page = max(limit, MIN_PAGE)
        candidates: list[tuple[int, tuple[tuple[str, str], ...]]] = []
        granted: list[limits.Granted] = []
        needs: dict[tuple[str, str, str], tuple[tuple[str, str], ...]] = {}
        for number in range(SCAN_PAGES):
            params = {"r_now": ask.now, "r_limit": page, "r_offset": number * page}
            if ask.names is not None:
                params["r_names"] = list(ask.names.names)
            rows = self._ready_page(conn, ready, params)
            met_needs = set()  # the needs of this page's jobs
            for job_id, queue, concurrency_key, rate_key in rows:
                found = needs.get((queue, concurrency_key, rate_key))
                if found is None:
                    keys = (queue, concurrency_key, rate_key)
                    found = needs[keys] = limits.needs(*keys, queue_limited=queue_limited)
                met_needs.add(found)
                candidates.append((job_id, found))
            unknown = {need for found in met_needs for need in found} - set(view.free)
            if unknown:
                met = self._slot_view(conn, unknown, ask)
                view.free.update(met.free)
                view.held.update(met.held)
            before = len(granted)
            granted = limits.grant(
                candidates, view.free, limit=limit, held=view.held.values(), depth=ask.depth
            )
            if len(rows) < page or len(granted) >= limit or (number and len(granted) == before):
                break
        return granted

    def _slots_take(
        self,
        conn: Connection,
        granted: Sequence[limits.Granted],
        attempts: Mapping[int, int],
        now: datetime,
    ) -> None:
        """Write the slots of the jobs claimed (``attempts``: their attempt numbers now): each
        chain's slots point at its last job claimed, each rate slot at its job's start."""
        # Each chain's slots point at its last job claimed (later jobs overwrite earlier ones).
        holder = {slot: g.id for g in granted if g.id in attempts for slot in g.chain}
        rated = {slot: g.id for g in granted if g.rates and g.id in attempts for slot in g.rates}
        if not holder and not rated:
            return
        periods = self._periods(conn, {s[:2] for s in rated})
        writes = [
            (
                kind,
                key,
                n,
                job_id,
                attempts[job_id],
                now + timedelta(seconds=periods.get(key, 0.0)) if kind == limits.RATE else None,
            )
            for (kind, key, n), job_id in [*holder.items(), *rated.items()]
        ]
        if self.is_postgresql:  # one statement, each column an array: not one per slot
            columns = {
                name: list(c)
                for name, c in zip(
                    flow_sql.SLOT_WRITE_COLUMNS, zip(*writes, strict=True), strict=True
                )
            }
            driver.run_in(conn, self._slot_writes_compiled, {"b_started": now} | columns)
            return
        stmt = (
            sa.update(slots)
            .where(
                slots.c.kind == sa.bindparam("b_kind"),
                slots.c.key == sa.bindparam("b_key"),
                slots.c.slot == sa.bindparam("b_slot"),
            )
            .values(
                job_id=sa.bindparam("b_job"),
                attempt=sa.bindparam("b_attempt"),
                started_at=sa.bindparam("b_started"),
                free_at=sa.bindparam("b_free"),
            )
        )
        conn.execute(
            stmt,
            [
                dict(zip(flow_sql.SLOT_WRITE_COLUMNS, w, strict=True)) | {"b_started": now}
                for w in writes
            ],
        )

    def _periods(self, conn: Connection, keys: set[tuple[str, str]]) -> dict[str, float]:
        if not keys:
            return {}
        stmt = (
            sa.select(slots.c.key, slots.c.period)
            .where(slots.c.kind == limits.RATE, slots.c.key.in_(sorted(k for _, k in keys)))
            .distinct()
        )
        return {key: float(period or 0.0) for key, period in conn.execute(stmt)}


def gates(chain: Sequence[limits.Slot]) -> tuple[str, ...]:
    """A chain's slots as the executor's gates: a job's gates are its chain's slots, and the
    jobs that share one run one after another in one child (:mod:`corequeue.executor`)."""
    return tuple(f"{key}#{n}" for _, key, n in chain)
