"""Function jobs, async function jobs and class jobs side by side, for the issue-20 tests:
each records what ``corequeue.current_job()`` said in the process that ran it, and the
lifecycle hooks append every event they see to ``$COREQUEUE_TEST_HOOK_LOG``."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import corequeue
from corequeue import Job, register_job


def _record(path: str, tag: str, value: Any = None) -> None:
    ctx = corequeue.current_job()
    entry = {"tag": tag, "value": value, "pid": os.getpid()}
    if ctx is not None:
        entry["ctx"] = {k: str(v) if v is not None else None for k, v in asdict(ctx).items()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@corequeue.job(queue="default", priority=3)
def plain(path: str, n: int) -> int:
    _record(path, "plain", n)
    return n * 2


@corequeue.job(alias="async-plain")
async def async_plain(path: str, n: int) -> int:
    await asyncio.sleep(0)
    _record(path, "async", n)
    return n * 3


@register_job
class ClassJob(Job):
    def __init__(self, path: str, n: int) -> None:
        self.path, self.n = path, n

    def run(self) -> int:
        _record(self.path, "class", self.n)
        return self.n * 4


@corequeue.job(retries=5, discard_on=(ValueError,))
def discarded(path: str) -> None:
    _record(path, "discarded")
    raise ValueError("bad input")


@corequeue.job(retries=2, retry_on=(TimeoutError,))
def only_timeouts(path: str) -> None:
    _record(path, "only_timeouts")
    raise KeyError("not a timeout")


@register_job
class ShouldRetry(Job):
    def __init__(self, path: str) -> None:
        self.path = path

    def default_retries(self) -> int:
        return 3

    def retry_delay(self, attempt: int) -> float:
        return 0.0  # (a worker in --burst mode runs the retry before it exits)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return attempt < 2

    def run(self) -> None:
        _record(self.path, "should_retry")
        raise RuntimeError("again")


@register_job
class Exhausted(Job):
    """Fails every attempt with an exception no rule judges: retried at once until its two
    attempts are used."""

    def __init__(self, path: str) -> None:
        self.path = path

    def default_retries(self) -> int:
        return 1

    def retry_delay(self, attempt: int) -> float:
        return 0.0

    def run(self) -> None:
        _record(self.path, "exhausted")
        ctx = corequeue.current_job()
        raise RuntimeError(f"attempt {ctx.attempt if ctx else '?'} failed")


@corequeue.job
def charge(order_id: int, amount: Decimal) -> str:
    return f"{order_id}:{amount + 1}"


@corequeue.job
def fails(path: str) -> None:
    _record(path, "fails")
    raise RuntimeError("for good")


def event_record(event: corequeue.JobEvent) -> dict[str, Any]:
    """A hook's event as JSON: its name, the job's context and how the attempt ended."""
    return {
        "event": event.event,
        "id": event.job_id,
        "pid": os.getpid(),
        "job": {k: _text(v) for k, v in asdict(event.job).items()},
        "outcome": event.outcome,
        "error": event.error,
        "rule": event.rule,
    }


def _text(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _log_event(event: corequeue.JobEvent) -> None:
    path = os.environ.get("COREQUEUE_TEST_HOOK_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event_record(event)) + "\n")


for _event in corequeue.hooks.EVENTS:
    corequeue.on(_event)(_log_event)


@corequeue.on("job_finished")
@corequeue.on("job_failed")
@corequeue.on("job_started")
def _raising_hook(event: corequeue.JobEvent) -> None:
    if os.environ.get("COREQUEUE_TEST_HOOK_LOG"):
        raise RuntimeError("a hook that raises changes nothing")


@corequeue.job
def crash(path: str) -> None:
    _record(path, "crash")
    os._exit(9)  # the child dies: the attempt is lost
