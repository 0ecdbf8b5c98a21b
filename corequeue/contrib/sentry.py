"""Report jobs that fail for good, and attempts lost with their worker or child, to Sentry (the
``sentry`` extra: ``pip install 'corequeue[sentry]'``, sentry-sdk 2).

Load it as a hook module, and initialise Sentry in a module the worker imports::

    [tool.corequeue]
    imports = ["myapp.jobs"]
    hooks = ["corequeue.contrib.sentry"]

    # myapp/jobs.py
    from typing import Literal

import sentry_sdk
    sentry_sdk.init(dsn="https://...@o0.ingest.sentry.io/0", environment="production")

``job_failed`` and ``job_lost`` fire in the worker that records the ending (see
:mod:`corequeue.hooks`): one Sentry event each, level ``error`` for a failure and ``warning`` for
a lost attempt, titled with the job's name and error, tagged with the job's name, queue and
outcome, with a ``corequeue job`` context (id, name, queue, attempt, outcome, error), and grouped
by event and job name (a job's errors often hold ids, which would split one problem into
many issues). A retried attempt reports nothing: only the last one's failure does.
"""

from __future__ import annotations

from typing import Literal

import sentry_sdk

from corequeue import hooks
from corequeue.hooks import JobEvent

__all__ = ["report"]

_LEVELS: dict[str, Literal["error", "warning"]] = {"job_failed": "error", "job_lost": "warning"}
_WHAT = {"job_failed": "failed", "job_lost": "lost an attempt"}


@hooks.on("job_failed")
@hooks.on("job_lost")
def report(event: JobEvent) -> None:
    """Send ``event`` (``job_failed`` or ``job_lost``) to Sentry, with the job's context."""
    title = f"job {event.name} {_WHAT.get(event.event, event.event)}"
    if event.error:
        title += f": {event.error}"
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("corequeue.job_name", event.name)
        scope.set_tag("corequeue.queue", event.queue)
        scope.set_tag("corequeue.outcome", event.outcome or "")
        scope.set_context(
            "corequeue job",
            {
                "id": event.job_id,
                "name": event.name,
                "queue": event.queue,
                "attempt": event.attempt,
                "outcome": event.outcome,
                "error": event.error,
            },
        )
        scope.fingerprint = ["corequeue", event.event, event.name]
        sentry_sdk.capture_message(title, level=_LEVELS.get(event.event, "error"))
