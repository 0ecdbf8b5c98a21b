"""The database being unreachable, as the worker's loop sees it.

While it is, results are kept in memory and claims are retried at a capped backoff (a claim is
the probe that notices the database is back); the outage is logged at most once every
:data:`OUTAGE_LOG_EVERY` seconds, however often it is retried.
"""

from __future__ import annotations

import logging
import time

from corequeue.core.errors import CorequeueError

log = logging.getLogger("corequeue.worker")

#: While the database is unreachable, claims are retried after 0.5 s, doubling up to 5 s; the
#: outage is logged once every 10 s, however often it is retried.
OUTAGE_BACKOFF_MIN = 0.5
OUTAGE_BACKOFF_MAX = 5.0
OUTAGE_LOG_EVERY = 10.0


class Outage:
    def __init__(self) -> None:
        self.since: float | None = None  # monotonic time the outage began (None: no outage)
        self.logged = 0.0  # monotonic time it was last logged
        self.retry_at = 0.0  # during an outage, claims are retried from then on
        self.backoff = OUTAGE_BACKOFF_MIN

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, exc: CorequeueError) -> None:
        """A database call failed with ``exc`` (DatabaseUnavailable): the next retry waits
        twice as long as the last, up to OUTAGE_BACKOFF_MAX."""
        mono = time.monotonic()
        if self.since is None:
            self.since = mono
        self.retry_at = mono + self.backoff
        self.backoff = min(self.backoff * 2, OUTAGE_BACKOFF_MAX)
        if mono - self.logged >= OUTAGE_LOG_EVERY:
            self.logged = mono
            log.error("%s; retrying (results are kept until it is back)", exc)

    def recovered(self) -> None:
        """A database call succeeded: the outage, if any, is over."""
        if self.since is not None:
            log.info("database reachable again after %.1fs", time.monotonic() - self.since)
            self.since = None
            self.logged = 0.0
        self.backoff = OUTAGE_BACKOFF_MIN
