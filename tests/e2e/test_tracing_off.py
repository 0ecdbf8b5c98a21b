"""Without OpenTelemetry in use, corequeue does not import it (no import time, no per-job work
beyond one dictionary look-up): not when enqueueing, not in the worker's children, though the
extra is installed here."""

from __future__ import annotations

import subprocess
import sys

from corequeue.core.states import JobState
from corequeue.store.queries import Store
from testing.e2e import WorkerFactory, clean_env

ENQUEUE = """
import sys
import corequeue
from corequeue import tracing
from testing.observed_jobs import OpenTelemetryModules

corequeue.configure(sys.argv[1])
OpenTelemetryModules().run_in_worker()
print(tracing.enabled(), sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""


def test_nothing_imports_opentelemetry_unless_the_application_does(
    store: Store, database_url: str, workers: WorkerFactory
) -> None:
    enqueued = subprocess.run(
        [sys.executable, "-c", ENQUEUE, database_url],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert enqueued.stdout.strip() == "False []", enqueued.stderr

    worker = workers(database_url, "--burst", imports=["testing.observed_jobs"])

    assert worker.wait_exit() == 0, worker.log()
    [job] = store.job_list()
    assert (job.name, job.state, job.result) == (
        "testing.observed_jobs.OpenTelemetryModules",
        JobState.SUCCEEDED,
        "[]",
    )
