"""Jobs that scheduler tests enqueue on a schedule (``--import tests.schedule_jobs``).

Nothing here declares a schedule: importing this module in the test process must not add
schedules to every later ``load_definitions`` call. ``tests.scheduler.python_schedules``
declares one with :func:`corequeue.schedule` for worker processes.
"""

from __future__ import annotations

from corequeue import Job, register_job


@register_job(alias="tick")
class Tick(Job):
    """Does nothing but return its key."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> str:
        return self.key


@register_job
class Report(Job):
    """A job with a keyword parameter, for schedules that pass args and kwargs."""

    def __init__(self, kind: str, *, pages: int = 1):
        self.kind = kind
        self.pages = pages

    def run(self) -> dict[str, object]:
        return {"kind": self.kind, "pages": self.pages}
