"""The worker process's own set-up: its store, its garbage collection, its log flushing, its
clock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from corequeue.config import Settings
from corequeue.store.queries import Store

log = logging.getLogger("corequeue.worker")

Clock = Callable[[], datetime]

#: The worker process's first-generation garbage collection threshold (Python's default: 700).
GC_THRESHOLD = 10_000


def worker_store(settings: Settings) -> Store:
    """The store a worker runs on: its own engine, with the worker's connection settings
    (see ``store.engine.create_engine(worker=True)``)."""
    return Store.from_url(
        settings.database_url, worker=True, synchronous_commit=settings.synchronous_commit
    )


def tune_gc() -> None:
    """Garbage collection for the worker's own process, once its start-up is done (imports,
    settings, engine): what exists then stays, so it is frozen out of later collections, and
    a collection starts after 10,000 new objects instead of 700. A busy worker keeps a few
    thousand jobs in flight (claimed, running, ending), and each job's objects outlive a
    700-object generation: young collections would run hundreds of times in a long drain, and
    each full one would keep the children's results waiting. Freed objects are still freed at
    once (reference counting); only cycles wait longer."""
    import gc

    gc.collect()
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *older)


def flush_logs() -> None:
    """Flush the root logger's handlers (the CLI's are block-buffered: see
    ``logs.configure_logging``); the loop calls it before each wait."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_heartbeat(settings: Settings) -> None:
    """Warn when other workers could rescue this worker's jobs while it is alive."""
    if settings.heartbeat_timeout <= 2 * settings.heartbeat_interval:
        # A warning, not an error: a lone worker (tests) may space its beats out freely.
        log.warning(
            "heartbeat_timeout (%gs) should be more than twice heartbeat_interval (%gs): "
            "other workers may rescue this worker's jobs as lost while it is alive",
            settings.heartbeat_timeout,
            settings.heartbeat_interval,
        )
