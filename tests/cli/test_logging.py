"""The CLI's log format: what logging's default formatter would write, made cheaper."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest

from corequeue.core.lifecycle import Change
from corequeue.core.states import JobState, Outcome
from corequeue.logs import BufferedStreamHandler, LineFormatter, direct_handler
from corequeue.store.records import AttemptEnd
from corequeue.worker import Counters, Worker
from corequeue.worker import joblog as worker_module


def test_line_formatter_writes_what_the_standard_formatter_writes() -> None:
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    ours = LineFormatter()
    for created in (1_800_000_000.0, 1_800_000_000.25, 1_800_000_000.999, 1_800_000_001.5):
        record = logging.LogRecord("cq", logging.INFO, __file__, 1, "x=%d", (1,), None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)


class _Stream:
    """A stream that records what reaches it, and when it is flushed."""

    def __init__(self) -> None:
        self.text = ""
        self.flushes = 0

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        self.flushes += 1


def test_the_workers_handler_writes_its_lines_and_flushes_only_when_told() -> None:
    # logging.StreamHandler flushes after every record: one write(2) per finished job on a
    # busy worker. The worker's handler leaves that to its loop (worker.flush_logs).
    stream = _Stream()
    handler = BufferedStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for n in range(3):
        handler.handle(logging.LogRecord("cq", logging.INFO, __file__, 1, "n=%d", (n,), None))

    assert (stream.text, stream.flushes) == ("n=0\nn=1\nn=2\n", 0)
    handler.flush()
    assert stream.flushes == 1
    # Another thread's line is flushed at once: the worker's loop may be asleep.
    other = threading.Thread(
        target=handler.handle,
        args=(logging.LogRecord("cq", logging.WARNING, __file__, 1, "lost", (), None),),
    )
    other.start()
    other.join()
    assert (stream.text.splitlines()[-1], stream.flushes) == ("lost", 2)


class CliLogging(NamedTuple):
    stream: _Stream
    handler: BufferedStreamHandler
    log: logging.Logger


@pytest.fixture
def cli_logging(monkeypatch: pytest.MonkeyPatch) -> CliLogging:
    """The worker's logger with `corequeue run`'s handler alone (pytest's own handlers sit on
    the root logger: this one does not propagate there), on a test stream."""
    stream = _Stream()
    handler = BufferedStreamHandler(stream)
    handler.setFormatter(LineFormatter())
    log = logging.Logger("corequeue.worker", logging.INFO)
    log.addHandler(handler)
    log.propagate = False
    monkeypatch.setattr(worker_module, "log", log)
    return CliLogging(stream, handler, log)


def test_lines_written_directly_read_exactly_as_records_would(
    cli_logging: CliLogging, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, handler, log = cli_logging
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.25)
    record = logging.LogRecord(log.name, logging.INFO, __file__, 1, "job=%d", (1,), None)
    record.created, record.msecs = 1_800_000_000.25, 250.0
    expected = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record)

    handler.write_lines(log, logging.INFO, ["job=1", "job=2"])

    assert stream.text == f"{expected}\n{expected[:-1]}2\n"
    assert stream.flushes == 0  # the main thread's lines wait for the loop's flush


def test_lines_go_directly_only_to_the_command_lines_own_handler_alone(
    cli_logging: CliLogging, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, handler, log = cli_logging
    assert direct_handler(log, logging.INFO) is handler
    assert direct_handler(log, logging.DEBUG) is None  # not enabled: no lines at all

    # Anything else that would see or filter the records gets records, as usual.
    other = logging.StreamHandler(_Stream())
    log.addHandler(other)  # an application's handler, pytest's log capture
    assert direct_handler(log, logging.INFO) is None
    log.removeHandler(other)
    log.addFilter(logging.Filter("somebody.else"))
    assert direct_handler(log, logging.INFO) is None
    log.filters.clear()
    handler.setFormatter(logging.Formatter("%(message)s"))
    assert direct_handler(log, logging.INFO) is None


def test_the_worker_writes_its_lines_in_order_directly_or_as_records(
    cli_logging: CliLogging, caplog: pytest.LogCaptureFixture
) -> None:
    stream, _, log = cli_logging
    worker: Any = SimpleNamespace(counters=Counters())
    now = datetime.now(UTC)
    change = Change(JobState.SUCCEEDED, 1, 1, None, now, now)
    ends = [
        AttemptEnd(job_id, "lease", 1, Outcome.SUCCEEDED, change, "w", now, now, name="Noop")
        for job_id in (1, 2, 3)
    ]
    applied = {1, 3}  # job 2's lease had moved on: its result was refused

    Worker._log_ends(worker, ends, applied)  # the command line's handler alone: directly
    direct = stream.text.splitlines()
    log.addHandler(caplog.handler)
    Worker._log_ends(worker, ends, applied)  # pytest's capture is there too: records

    assert [line.split(" ", 3)[2:] for line in direct] == [
        ["INFO", "corequeue.worker finished job_id=1 name=Noop queue= attempt=1 "
         "outcome=succeeded state=succeeded duration_ms=0.0 waited_ms=- priority=0 pid=- "
         "source=-"],
        ["WARNING", "corequeue.worker refused job_id=2 attempt=1 outcome=succeeded: the job is "
         "no longer running under this attempt's lease (cancelled or rescued)"],
        ["INFO", "corequeue.worker finished job_id=3 name=Noop queue= attempt=1 "
         "outcome=succeeded state=succeeded duration_ms=0.0 waited_ms=- priority=0 pid=- "
         "source=-"],
    ]  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == [line.split(" ", 4)[4] for line in direct]
    # The same lines (but for the time) through records this time.
    assert [line.split(" ", 2)[2] for line in stream.text.splitlines()] == 2 * [
        line.split(" ", 2)[2] for line in direct
    ]
    assert worker.counters.succeeded == 4 and worker.counters.refused == 2


def test_a_direct_line_reads_as_its_record_whatever_the_jobs_text(
    cli_logging: CliLogging, caplog: pytest.LogCaptureFixture
) -> None:
    """The direct lines are built from a template per name, queue and source (texts escaped,
    ``%`` doubled): they must read exactly as the records' messages do."""
    stream, _, log = cli_logging
    worker: Any = SimpleNamespace(counters=Counters())
    now = datetime.now(UTC)
    later = Change(JobState.REQUESTED, 1, 3, None, now, None)
    texts = ["", "100%", "%s%d%%", "two\nlines", "\x1b[31mred", "tab\there", "ünï code"]
    ends = [
        AttemptEnd(
            i,
            "lease",
            2,
            Outcome.DEFERRED if i % 2 else Outcome.SUCCEEDED,
            later,
            "w",
            now - timedelta(microseconds=150 * i) if i % 3 else None,
            now,
            name=texts[i % len(texts)],
            queue=texts[(i + 1) % len(texts)],
            priority=i - 5,
            source=texts[(i + 2) % len(texts)],
            run_at=now - timedelta(seconds=i / 7) if i % 4 else None,
            pid=1000 + i if i % 5 else None,
        )
        for i in range(1, 3 * len(texts))
    ]
    applied = {e.job_id for e in ends}

    Worker._log_ends(worker, ends, applied)  # directly
    direct = [line.split(" ", 4)[4] for line in stream.text.splitlines()]
    log.addHandler(caplog.handler)
    Worker._log_ends(worker, ends, applied)  # as records

    assert direct == [r.getMessage() for r in caplog.records]
    assert len(direct) == len(ends) and "%" in "".join(direct) and "\n" not in "".join(direct)
