"""A job module that only the "new" workers of the rolling-deploy test import (``--import
testing.deploy_jobs``); the "old" ones import ``testing.reliability_jobs`` alone."""

from __future__ import annotations

from typing import Any

from corequeue import Job, register_job
from testing.reliability_jobs import record


@register_job
class NewCode(Job):
    """Records its run and returns its key."""

    def __init__(self, log: str, key: Any):
        self.log = log
        self.key = key

    def run(self) -> Any:
        record(self.log, self.key)
        return self.key
