"""The flow-control benchmark's job: a no-op with a concurrency limit of 1 per key."""

from __future__ import annotations

from benchmarks.jobs import Noop  # noqa: F401  (registered: the unlimited and queue drains)
from corequeue import Job, register_job


@register_job(alias="bench-keyed-noop")
class KeyedNoop(Job):
    """Does nothing, at most one at a time per key (fleet-wide)."""

    concurrency_limit = 1

    def __init__(self, key: int) -> None:
        self.key = key

    def default_limit_key(self) -> str:
        return f"k{self.key}"

    def run(self) -> None:
        return None
