"""Jobs for the Sentry integration's test (``--import testing.sentry_jobs``): one that raises,
one whose child dies.

With ``COREQUEUE_TEST_SENTRY`` set to a file, importing this module initialises Sentry with a
transport that appends each event to that file (a JSON line) instead of sending it: the test
reads what a real worker reported, and nothing goes over the network.
"""

from __future__ import annotations

import json
import os
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from corequeue import Job, register_job

SENTRY_ENV = "COREQUEUE_TEST_SENTRY"


class FileTransport(Transport):
    """Appends each event of an envelope to the file named by ``COREQUEUE_TEST_SENTRY``."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.path = os.environ[SENTRY_ENV]

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(event, default=str) + "\n")


if os.environ.get(SENTRY_ENV):
    sentry_sdk.init(
        dsn="https://public@sentry.invalid/1", transport=FileTransport, default_integrations=False
    )


@register_job
class ChargeDeclined(Job):
    def __init__(self, order_id: int) -> None:
        self.order_id = order_id

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> None:
        raise RuntimeError(f"card declined for order {self.order_id}")


@register_job
class Segfault(Job):
    def run(self) -> None:
        os._exit(9)  # the child dies: the attempt is lost
