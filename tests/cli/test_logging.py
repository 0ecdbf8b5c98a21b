"""The CLI's log format: what logging's default formatter would write, made cheaper."""

from __future__ import annotations

import logging
import threading

from corequeue.cli import BufferedStreamHandler, LineFormatter


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
