"""Job-aware log records: logs.JobFields names the running job on every record logged during
it (corequeue.current_job(), a context variable), and both formats show it."""

from __future__ import annotations

import asyncio
import json
import logging

from corequeue.context import JobContext, running
from corequeue.logs import JobFields, JsonFormatter, LineFormatter

JOB = JobContext(42, "app.jobs.Charge", "billing", 0, 2, 3, None, None, "w", "app.py:1")


def record(message: str) -> logging.LogRecord:
    made = logging.LogRecord("app", logging.INFO, __file__, 1, message, (), None)
    JobFields().filter(made)
    return made


def test_records_logged_during_a_job_carry_it_and_others_do_not() -> None:
    with running(JOB):
        inside = record("charging")
    outside = record("idle")
    fields = json.loads(JsonFormatter().format(inside))
    assert (fields["job_id"], fields["job_name"], fields["queue"], fields["attempt"]) == (
        42,
        "app.jobs.Charge",
        "billing",
        2,
    )
    assert "_cq_job" not in fields
    assert "job_id" not in json.loads(JsonFormatter().format(outside))
    text = LineFormatter().format(inside)
    assert text.endswith(" charging job_id=42 job=app.jobs.Charge queue=billing attempt=2")
    assert LineFormatter().format(outside).endswith(" app idle")


def test_an_async_jobs_tasks_see_its_context() -> None:
    async def in_a_task() -> logging.LogRecord:
        await asyncio.sleep(0)
        return record("in a task")

    async def job() -> logging.LogRecord:
        return await asyncio.create_task(in_a_task())

    with running(JOB):
        made = asyncio.run(job())
    assert made.__dict__["job_id"] == 42
