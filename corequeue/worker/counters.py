"""What a worker has done since it started: logged with its stats, written with each beat, and
logged as JSON when it stops."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0  # attempts that errored, timed out or were lost
    retried: int = 0
    deferred: int = 0
    cancelled: int = 0  # attempts ended by a cancel (their child stopped while running)
    released: int = 0
    refused: int = 0  # results refused because the lease had moved on
    wakeups: int = 0  # times the loop waited and woke up (stays low when idle)
    since: float = field(default_factory=time.monotonic)
    turned_at: float = field(default_factory=time.monotonic)  # the loop's last turn (/livez)

    def woke(self) -> None:
        """The loop went round once more (it waited and woke up)."""
        self.wakeups += 1
        self.turned_at = time.monotonic()

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("since", "turned_at")}
