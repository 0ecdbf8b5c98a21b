"""corequeue's tables and every statement run on them (see :mod:`corequeue.store.queries`)."""

from corequeue.store.queries import Store

__all__ = ["Store"]
