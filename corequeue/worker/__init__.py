"""The worker: a loop that claims jobs, hands them to child processes and records how they
ended (:mod:`~corequeue.worker.loop`), with its two database lanes (``lanes``), its outage
handling (``outage``), its maintenance services (``services``), its counters and per-job log
lines (``counters``, ``joblog``), the LISTEN thread that wakes it (``notifier``) and the
process-wide set-up (``process``). Imports run one way: ``loop`` uses the others, none uses
``loop``.
"""

from corequeue.worker.counters import Counters
from corequeue.worker.loop import Worker
from corequeue.worker.process import GC_THRESHOLD, Clock, flush_logs, tune_gc, utcnow, worker_store
from corequeue.worker.services import Heartbeat, Pruner, Rescuer, Service, ServiceHost

__all__ = [
    "GC_THRESHOLD",
    "Clock",
    "Counters",
    "Heartbeat",
    "Pruner",
    "Rescuer",
    "Service",
    "ServiceHost",
    "Worker",
    "flush_logs",
    "tune_gc",
    "utcnow",
    "worker_store",
]
