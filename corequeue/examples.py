"""Example jobs for the quick start: ``python -m corequeue.examples`` enqueues a few.

Then ``corequeue run --import corequeue.examples --burst`` runs them and exits.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import corequeue
from corequeue import DeferJob, Job, register_job


@register_job(alias="greet")
class Greet(Job):
    def __init__(self, name: str):
        self.name = name

    def run(self) -> dict[str, Any]:
        return {"greeting": f"Hello, {self.name}!"}


@register_job
class Add(Job):
    def __init__(self, a: float, b: float):
        self.a, self.b = a, b

    def run(self) -> float:
        return self.a + self.b


@register_job
class Flaky(Job):
    """Fails about half its attempts; retried up to 5 times, at once."""

    def default_retries(self) -> int:
        return 5

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> str:
        if random.random() < 0.5:
            raise RuntimeError("flaky service did not answer")
        return "ok"


@register_job
class WaitUntil(Job):
    """Defers itself until ``when``."""

    def __init__(self, when: datetime):
        self.when = when

    def run(self) -> str:
        if datetime.now(UTC) < self.when:
            raise DeferJob(delay=self.when)
        return f"ran at {datetime.now(UTC):%H:%M:%S}"


def main() -> None:
    store = corequeue.configure()
    store.migrate()
    handles = corequeue.enqueue_many([Greet(f"user {i}") for i in range(10)])
    handles += [Add(2, 3).run_in_worker(priority=10), Flaky().run_in_worker()]
    where = store.url.render_as_string(hide_password=True)
    print(f"enqueued {len(handles)} example jobs in {where}")
    print("run them with: corequeue run --import corequeue.examples --burst")


if __name__ == "__main__":
    main()
