"""OpenTelemetry (the ``otel`` extra): an enqueue inside a traced request and its attempts in a
real worker's children are one trace.

This process exports to the SDK's in-memory exporter; the worker's children export to files
(``testing.traced_jobs``, through a batching span processor that the child flushes as it
exits), which the test reads back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from corequeue.core.states import JobState
from corequeue.store.queries import Store
from testing.e2e import WorkerFactory
from testing.traced_jobs import (
    SPANS_ENV,
    AsyncWelcome,
    BadAddress,
    FlakyCharge,
    Hang,
    Welcome,
    read_spans,
)


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """This process's spans. The global tracer provider can be set once per process: an SDK
    provider already set (by another test module) is reused."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    provider.add_span_processor(processor)
    yield memory
    processor.shutdown()  # the exporter keeps nothing from here on


def hex_id(value: int, digits: int) -> str:
    """An id as ``ReadableSpan.to_json()`` writes it."""
    return f"0x{value:0{digits}x}"


def test_an_enqueue_in_a_request_and_its_attempts_in_the_worker_are_one_trace(
    store: Store,
    database_url: str,
    workers: WorkerFactory,
    exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    exporter.clear()
    tracer = trace.get_tracer("app.web")
    with tracer.start_as_current_span("POST /signup", kind=SpanKind.SERVER) as request:
        welcome = Welcome(7).run_in_worker(queue="mail")
        flaky = FlakyCharge().run_in_worker(retries=1)
        bad = BadAddress().run_in_worker(retries=0)
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()

    worker = workers(
        database_url, "--burst", env={SPANS_ENV: str(spans_dir)}, imports=["testing.traced_jobs"]
    )

    assert worker.wait_exit() == 0, worker.log()
    assert [h.refresh().state for h in (welcome, flaky, bad)] == [
        JobState.SUCCEEDED,
        JobState.SUCCEEDED,
        JobState.FAILED,
    ]
    trace_id = request.get_span_context().trace_id
    producers = sends(exporter.get_finished_spans(), request)
    children = read_spans(spans_dir)
    assert {s["context"]["trace_id"] for s in children} == {hex_id(trace_id, 32)}, children

    [attempt] = attempts(children, producers[welcome.id], welcome.id)
    assert attempt["attributes"]["messaging.destination.name"] == "mail"
    assert attempt["attributes"]["corequeue.job.name"] == "testing.traced_jobs.Welcome"
    assert (attempt["attributes"]["corequeue.job.outcome"], attempt["status"]["status_code"]) == (
        "succeeded",
        "UNSET",
    )
    [own] = [s for s in children if s["name"] == "render welcome mail"]  # the job's own span
    assert own["parent_id"] == attempt["context"]["span_id"]

    first, second = attempts(children, producers[flaky.id], flaky.id)
    assert first["attributes"]["corequeue.job.outcome"] == "errored"
    assert first["status"] == {
        "status_code": "ERROR",
        "description": "payment gateway timed out",
    }
    assert exception_of(first) == ("ConnectionError", "payment gateway timed out")
    assert second["attributes"]["corequeue.job.outcome"] == "succeeded"
    assert not second["events"]

    [failed] = attempts(children, producers[bad.id], bad.id)
    assert failed["attributes"]["corequeue.job.outcome"] == "errored"
    assert failed["attributes"]["error.type"] == "ValueError"
    assert failed["status"]["status_code"] == "ERROR"
    assert exception_of(failed) == ("ValueError", "no such street")


def sends(spans: tuple[ReadableSpan, ...], request: Any) -> dict[int, ReadableSpan]:
    """The producer spans, by job id: each a child of the request's span, with the messaging
    attributes."""
    out = {}
    for span in spans:
        if span.kind is not SpanKind.PRODUCER:
            continue
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        attributes = dict(span.attributes or {})
        assert attributes["messaging.system"] == "corequeue"
        assert attributes["messaging.operation.type"] == "send"
        assert span.name == f"send {attributes['messaging.destination.name']}"
        out[int(str(attributes["messaging.message.id"]))] = span
    assert len(out) == 3, spans
    return out


def attempts(children: list[dict[str, Any]], producer: ReadableSpan, job_id: int) -> list[Any]:
    """The consumer spans of ``job_id``, by attempt: each a child of ``producer`` and linked
    to it, with the messaging attributes."""
    found = [
        s
        for s in children
        if s["kind"] == "SpanKind.CONSUMER"
        and s["attributes"]["messaging.message.id"] == str(job_id)
    ]
    found.sort(key=lambda s: s["attributes"]["corequeue.job.attempt"])
    assert [s["attributes"]["corequeue.job.attempt"] for s in found] == list(
        range(1, len(found) + 1)
    )
    context = producer.get_span_context()
    for span in found:
        assert span["parent_id"] == hex_id(context.span_id, 16)
        assert [link["context"]["span_id"] for link in span["links"]] == [
            hex_id(context.span_id, 16)
        ]
        attributes = span["attributes"]
        assert attributes["messaging.system"] == "corequeue"
        assert attributes["messaging.operation.type"] == "process"
        assert span["name"] == f"process {attributes['messaging.destination.name']}"
    return found


def exception_of(span: dict[str, Any]) -> tuple[str, str]:
    """The type and message of the exception recorded on ``span``."""
    [event] = [e for e in span["events"] if e["name"] == "exception"]
    return event["attributes"]["exception.type"], event["attributes"]["exception.message"]


def test_async_attempts_are_traced_and_a_timed_out_one_ends_its_span(
    store: Store,
    database_url: str,
    workers: WorkerFactory,
    exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    exporter.clear()
    tracer = trace.get_tracer("app.web")
    with tracer.start_as_current_span("POST /signup", kind=SpanKind.SERVER) as request:
        welcome = AsyncWelcome().run_in_worker()
        hang = Hang().run_in_worker(timeout=0.5, retries=0)
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()

    worker = workers(
        database_url, "--burst", env={SPANS_ENV: str(spans_dir)}, imports=["testing.traced_jobs"]
    )

    assert worker.wait_exit() == 0, worker.log()
    assert [welcome.refresh().state, hang.refresh().state] == [JobState.SUCCEEDED, JobState.FAILED]
    producers = {
        int(str((s.attributes or {})["messaging.message.id"])): s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.PRODUCER
    }
    assert all(
        s.context.trace_id == request.get_span_context().trace_id for s in producers.values()
    )
    children = read_spans(spans_dir)
    [attempt] = attempts(children, producers[welcome.id], welcome.id)
    assert attempt["attributes"]["corequeue.job.outcome"] == "succeeded"
    [own] = [s for s in children if s["name"] == "render async welcome"]
    assert own["parent_id"] == attempt["context"]["span_id"]
    [stopped] = attempts(children, producers[hang.id], hang.id)
    assert stopped["attributes"]["corequeue.job.outcome"] == "timed_out"
    assert stopped["attributes"]["error.type"] == "timed_out"
    assert stopped["status"] == {
        "status_code": "ERROR",
        "description": "the job ran past its timeout of 0.5s",
    }
