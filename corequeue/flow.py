"""Flow control's public side: pausing and resuming queues, and the queues' configured limits
(``[tool.corequeue.queue.NAME] concurrency_limit = N, rate_limit = "100/m"``).

The rule is :mod:`corequeue.core.limits`; the state is in the database
(:mod:`corequeue.store.flow`), so a pause or a limit holds for every worker.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from corequeue import runtime
from corequeue.commands import add_common_options, emit, open_store, settings_from
from corequeue.core import limits
from corequeue.core.errors import ConfigError
from corequeue.store.queries import Store
from corequeue.store.records import record_dict

_QUEUE_KEYS = {"concurrency_limit", "rate_limit"}


def pause_queue(name: str, *, store: Store | None = None) -> None:
    """Pause ``name`` for every worker: its waiting jobs wait, running ones finish, enqueues
    still work. Workers stop claiming from it at their next claim."""
    (store or runtime.get_store()).queue_pause(_queue_name(name), now=datetime.now(UTC))


def resume_queue(name: str, *, store: Store | None = None) -> None:
    """Resume a paused queue (its workers are woken on PostgreSQL)."""
    (store or runtime.get_store()).queue_pause(
        _queue_name(name), paused=False, now=datetime.now(UTC)
    )


def _queue_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 100 or "\x00" in name:
        raise ConfigError(f"queue {name!r:.80} must be a non-empty name of at most 100 characters")
    return name


def queue_limits(
    tables: Mapping[str, Any], *, source: str = "configuration"
) -> dict[str, tuple[int | None, limits.Rate | None]]:
    """``[tool.corequeue.queue.NAME]`` tables as (concurrency limit, rate) per queue. Raises
    ConfigError naming the queue and key that cannot be used."""
    out: dict[str, tuple[int | None, limits.Rate | None]] = {}
    for name, table in tables.items():
        where = f"[tool.corequeue.queue.{name}] ({source})"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table")
        unknown = set(table) - _QUEUE_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (known: "
                f"{', '.join(sorted(_QUEUE_KEYS))})"
            )
        try:
            concurrency = table.get("concurrency_limit")
            rate = table.get("rate_limit")
            out[_queue_name(name)] = (
                None if concurrency is None else limits.check_concurrency(concurrency),
                None if rate is None else limits.parse_rate(rate),
            )
        except limits.LimitError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return out


class QueueLimitSync:
    """A worker service: makes the stored queue limits this worker's configured ones, as it
    starts and then every :attr:`interval` seconds (through the worker's outage handling)."""

    name = "queue limits"
    interval = 30.0
    needs_settled = False  # queue rows only

    def __init__(
        self, store: Store, configured: Mapping[str, tuple[int | None, limits.Rate | None]]
    ) -> None:
        self.store = store
        self.configured = dict(configured)

    def run_once(self, now: datetime) -> None:
        self.store.queue_configure(self.configured, now=now)


def worker_services(store: Store, tables: Mapping[str, Any], *, source: str) -> list[Any]:
    """The queue-limit service of a worker. Raises ConfigError (the worker refuses to start)."""
    return [QueueLimitSync(store, queue_limits(tables, source=source))]


# -- the `corequeue queues` command ------------------------------------------------------------


def add_command(sub: Any) -> None:
    p = sub.add_parser("queues", help="list queues (paused, limits, ready, running), pause, resume")
    p.add_argument(
        "action",
        choices=("list", "pause", "resume"),
        nargs="?",
        default="list",
        help="list (the default), pause NAME or resume NAME",
    )
    p.add_argument("name", nargs="?", help="the queue (pause, resume)")
    add_common_options(p)
    p.set_defaults(handler=cmd_queues)


def cmd_queues(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = open_store(settings)
    store.check_schema()
    if args.action != "list":
        if not args.name:
            raise ConfigError(f"corequeue queues {args.action} needs a queue name")
        paused = args.action == "pause"
        store.queue_pause(_queue_name(args.name), paused=paused, now=datetime.now(UTC))
        emit(args, {"name": args.name, "paused": paused}, f"queue {args.name}: {args.action}d")
        return 0
    infos = store.queue_list(now=datetime.now(UTC))
    data = [record_dict(q) for q in infos]
    rows = [
        ("queue", "state", "concurrency", "rate", "ready", "scheduled", "running", "oldest wait")
    ]
    for q in infos:
        rows.append(
            (
                q.name,
                "paused" if q.paused else "active",
                str(q.concurrency_limit or "-"),
                q.rate_limit or "-",
                str(q.ready),
                str(q.scheduled),
                str(q.running),
                "-" if q.oldest_wait is None else f"{q.oldest_wait:.1f}s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
    emit(args, data, text if infos else "no queues")
    return 0
