"""The query seam: :class:`Store`, every SQL statement corequeue runs on its tables, as small
noun-first methods. Batch operations end in ``_many``.

Store is one class assembled from one part per responsibility, each in its own module:

- :mod:`~corequeue.store.migration`: the schema's version, its check, ``migrate``;
- :mod:`~corequeue.store.inserts`: enqueuing, plain and unique;
- :mod:`~corequeue.store.claims`: the claim, a translation of :mod:`corequeue.core.claims`;
- :mod:`~corequeue.store.endings`: a batch of attempt endings, releases, lease checks;
- :mod:`~corequeue.store.admin`: a person's actions on one job (get, cancel, retry, delete);
- :mod:`~corequeue.store.reads`: job lists, attempts, counts;
- :mod:`~corequeue.store.maintenance`: pruning, the workers' rows, rescuing lost attempts;
- :mod:`~corequeue.store.support`: the queries of the test plugin and the benchmark.

They share :mod:`~corequeue.store.base` (connections, error translation, the driver fast path
of :mod:`~corequeue.store.driver`), :mod:`~corequeue.store.rows` (rows to records) and
:mod:`~corequeue.store.writer`, the one compare-and-set writer. Every decision comes from
:mod:`corequeue.core`; the store only persists it. Schedules are in
:mod:`~corequeue.store.schedules`, the dashboard's reads in :mod:`~corequeue.store.monitoring`.
"""

from __future__ import annotations

from corequeue.store.admin import AdminQueries
from corequeue.store.claims import ClaimQueries
from corequeue.store.endings import ON_JOB_ROW, ON_JOB_ROW_STATE, EndingQueries
from corequeue.store.inserts import InsertQueries
from corequeue.store.maintenance import MaintenanceQueries
from corequeue.store.migration import SchemaQueries
from corequeue.store.reads import ReadQueries
from corequeue.store.rows import NOTIFY_CHANNEL, ConnectionLike
from corequeue.store.support import SupportQueries

__all__ = ["NOTIFY_CHANNEL", "ON_JOB_ROW", "ON_JOB_ROW_STATE", "ConnectionLike", "Store"]


class Store(
    SchemaQueries,
    InsertQueries,
    ClaimQueries,
    EndingQueries,
    AdminQueries,
    ReadQueries,
    MaintenanceQueries,
    SupportQueries,
):
    """corequeue's tables in one database, reached through a SQLAlchemy engine."""
