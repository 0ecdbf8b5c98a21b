"""Imported by a worker's children (``--import testing.slow_start``) to hold their start-up.

In a child process, or in the fork server the children are forked from (which imports the
application's modules for them: ``sys.argv`` is ``["-c"]`` there), importing this module first
creates ``$COREQUEUE_TEST_GATE.waiting``, then blocks until the file ``$COREQUEUE_TEST_GATE``
exists. The worker's own process imports it without waiting.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

from testing.jobs import wait_for_gate

GATE_ENV = "COREQUEUE_TEST_GATE"

_starting = multiprocessing.parent_process() is not None or sys.argv[:1] == ["-c"]
if _starting and os.environ.get(GATE_ENV):
    gate = Path(os.environ[GATE_ENV])
    Path(f"{gate}.waiting").touch()
    wait_for_gate(gate)
