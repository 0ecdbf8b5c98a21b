"""Jobs for the OpenTelemetry tests (``--import testing.traced_jobs``): one that succeeds (and
opens a span of its own), one that fails its first attempt and succeeds on its retry, one that
always fails, and two async ones: one that opens a span of its own, one that runs past any
timeout.

A worker imports this module in each child: with ``COREQUEUE_TEST_SPANS`` set to a directory,
it configures OpenTelemetry's SDK there as an application would (a batching span processor,
which holds spans back until the child flushes it as it exits), exporting to a JSON-lines file
of the child's own (``<pid>.jsonl``), which the test reads.
The test process imports it without that variable, and configures its own provider.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import corequeue
from corequeue import Job, register_job

SPANS_ENV = "COREQUEUE_TEST_SPANS"


class FileSpanExporter(SpanExporter):
    """Appends each span (``ReadableSpan.to_json()``, one line) to ``<directory>/<pid>.jsonl``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(json.loads(s.to_json())) + "\n" for s in spans)
        with open(self.directory / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


def read_spans(directory: Path) -> list[dict[str, Any]]:
    """Every span the children exported to ``directory``."""
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


if os.environ.get(SPANS_ENV):
    _provider = TracerProvider()
    _provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(Path(os.environ[SPANS_ENV]))))
    trace.set_tracer_provider(_provider)

app_tracer = trace.get_tracer("app.signup")


@register_job
class Welcome(Job):
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id

    def run(self) -> int:
        with app_tracer.start_as_current_span("render welcome mail"):
            return self.user_id


@register_job
class FlakyCharge(Job):
    """Fails its first attempt, succeeds on the next."""

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> str:
        context = corequeue.current_job()
        assert context is not None
        if context.attempt == 1:
            raise ConnectionError("payment gateway timed out")
        return "charged"


@register_job
class BadAddress(Job):
    def run(self) -> None:
        raise ValueError("no such street")


@register_job
class AsyncWelcome(Job):
    async def run(self) -> str:
        with app_tracer.start_as_current_span("render async welcome"):
            await asyncio.sleep(0)
        return "sent"


@register_job
class Hang(Job):
    async def run(self) -> None:
        await asyncio.sleep(3600)
