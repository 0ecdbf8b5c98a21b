"""The command line's log lines: ``asctime level logger message`` on stderr, made cheap enough
for a worker that finishes tens of thousands of jobs a second and logs a line for each.

- :class:`LineFormatter` writes what ``logging.Formatter`` would with that format, reusing the
  timestamp text within a second.
- :class:`BufferedStreamHandler` leaves flushing the main thread's lines to the worker's loop.
- :func:`direct_handler` tells the worker when its per-job lines may skip the ``LogRecord``
  machinery (a cost paid once a line): only while the command line's own handler is the one place
  they would go, with nothing that could filter or see the records on the way.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from corequeue.context import current_job
from corequeue.core.text import one_line


class LineFormatter(logging.Formatter):
    """``asctime level logger message``, the timestamp text reused within a second (a busy
    worker writes thousands of lines a second)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._second = -1
        self._text = ""

    def stamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(created))
        return f"{self._text},{int(msecs):03d}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created, record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            text = super().format(record)  # the traceback's lines follow the message
            first, newline, rest = text.partition("\n")
            return first + _job_suffix(record) + newline + rest
        # One record, one line: a newline or an escape sequence in the text (a queue name, an
        # error) is written escaped.
        record.message = one_line(record.getMessage())
        record.asctime = self.stamp(record.created, record.msecs)
        line = f"{record.asctime} {record.levelname} {record.name} {record.message}"
        return line + _job_suffix(record)


def _job_suffix(record: logging.LogRecord) -> str:
    """`` job_id=.. job=.. queue=.. attempt=..`` for a record logged while a job ran (see
    :class:`JobFields`), "" for any other."""
    if not getattr(record, "_cq_job", False):
        return ""
    fields = record.__dict__
    name, queue = one_line(str(fields["job_name"])), one_line(str(fields["queue"]))
    return f" job_id={fields['job_id']} job={name} queue={queue} attempt={fields['attempt']}"


class JobFields(logging.Filter):
    """Adds the running job's ``job_id``, ``job_name``, ``queue`` and ``attempt`` to every
    record logged while it runs (``corequeue.current_job()``: a context variable, so right in
    threads and async jobs alike). The worker's children put it on their handler; an
    application that configures logging itself may add it to its own handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job()
        if job is not None and not hasattr(record, "job_id"):
            record.job_id, record.job_name = job.id, job.name
            record.queue, record.attempt = job.queue, job.attempt
            record._cq_job = True
        return True


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that leaves flushing the main thread's lines to :meth:`flush`, which
    the worker's loop calls before it waits (StreamHandler flushes after every record: one
    write(2) per line, whatever the stream's buffer). Other threads' lines (the LISTEN
    thread's, say) are flushed at once: the loop may be asleep."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_lines(self, logger: logging.Logger, level: int, messages: Sequence[str]) -> None:
        """Write ``messages`` as this handler's formatter writes records of ``logger`` at
        ``level`` logged now, without building the records (see :func:`direct_handler`)."""
        formatter = self.formatter
        assert isinstance(formatter, LineFormatter)
        created = time.time()
        prefix = (
            f"{formatter.stamp(created, (created - int(created)) * 1000)}"
            f" {logging.getLevelName(level)} {logger.name} "
        )
        end = self.terminator
        text = prefix + f"{end}{prefix}".join(messages) + end
        self.acquire()
        try:
            self._write(text)
        except RecursionError:
            raise
        except Exception:  # as emit() does: logging never takes the worker down
            self.handleError(logging.makeLogRecord({"name": logger.name, "msg": text}))
        finally:
            self.release()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        if threading.current_thread() is not threading.main_thread():
            self.flush()


def direct_handler(logger: logging.Logger, level: int) -> BufferedStreamHandler | None:
    """The handler ``logger``'s records at ``level`` would reach, when writing lines to it
    directly (:meth:`BufferedStreamHandler.write_lines`) gives exactly the same output: it is
    the only handler on the way (the command line's own), and no logger or handler on the way
    has a filter. Otherwise None: somebody else configured logging (an application, pytest's
    log capture), and gets ``LogRecord`` objects as usual."""
    if not logger.isEnabledFor(level):
        return None
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        found += current.handlers
        current = current.parent if current.propagate else None
    if len(found) != 1:
        return None
    (handler,) = found
    if (
        type(handler) is not BufferedStreamHandler
        or type(handler.formatter) is not LineFormatter
        or handler.filters
        or level < handler.level
    ):
        return None
    return handler


#: The environment variable that carries ``--log-format`` to the worker's children (read by
#: executor.child.ChildConfig.of, in the worker: they are forked from a server started earlier).
LOG_FORMAT_ENV = "COREQUEUE_LOG_FORMAT"
LOG_FORMATS = ("text", "json")

#: What every LogRecord has: anything else on a record came from ``extra`` (or a filter).
_RECORD_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    every attribute a record got from ``extra`` or a filter (``job_id``, ``job_name``,
    ``queue``, ``attempt``, ...) and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        out: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def formatter_for(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else LineFormatter()


def configure_child_logging(log_format: str) -> None:
    """A child process's logging: INFO and up to stderr, in the parent's ``--log-format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    handler.addFilter(JobFields())  # every record logged during a job names the job
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def configure_logging(level: str, *, buffered: bool = False, log_format: str = "text") -> None:
    """Log lines to stderr. ``buffered`` (the worker): block-buffered, and the worker flushes
    the handlers each time round its loop, before it waits, so a busy worker writes its lines
    by the batch instead of one write per line. ``log_format``: ``text`` or ``json`` (one
    object a line: :class:`JsonFormatter`), also for the worker's children."""
    stream: Any = sys.stderr
    if buffered:
        stream = io.TextIOWrapper(
            open(sys.stderr.fileno(), "wb", buffering=1 << 16, closefd=False),  # noqa: SIM115
            encoding=sys.stderr.encoding,
            errors="backslashreplace",
        )
    handler = BufferedStreamHandler(stream) if buffered else logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(log_format))
    os.environ[LOG_FORMAT_ENV] = log_format  # for the worker's children (ChildConfig.of)
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])
    # The format shows no thread or process: do not look them up for every record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
