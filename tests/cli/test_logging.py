"""The CLI's log format: what logging's default formatter would write, made cheaper."""

from __future__ import annotations

import logging

from corequeue.cli import LineFormatter


def test_line_formatter_writes_what_the_standard_formatter_writes() -> None:
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    ours = LineFormatter()
    for created in (1_800_000_000.0, 1_800_000_000.25, 1_800_000_000.999, 1_800_000_001.5):
        record = logging.LogRecord("cq", logging.INFO, __file__, 1, "x=%d", (1,), None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)
