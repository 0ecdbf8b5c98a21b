"""Jobs for the observability tests (``--import testing.observed_jobs``): one that logs with
the standard library's ``logging``, as application code does, one that fails, and one that
says which OpenTelemetry modules its child has loaded."""

from __future__ import annotations

import logging
import sys

from corequeue import Job, register_job

app_log = logging.getLogger("app.orders")


@register_job
class ChargeOrder(Job):
    def __init__(self, order_id: int) -> None:
        self.order_id = order_id

    def run(self) -> int:
        app_log.info("charging order %d", self.order_id)
        return self.order_id


@register_job
class Explode(Job):
    def __init__(self, why: str) -> None:
        self.why = why

    def run(self) -> None:
        raise RuntimeError(self.why)


@register_job
class OpenTelemetryModules(Job):
    """Returns the OpenTelemetry modules loaded in the child that runs it."""

    def run(self) -> list[str]:
        return sorted(m for m in sys.modules if m.partition(".")[0] == "opentelemetry")
