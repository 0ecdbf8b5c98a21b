"""A schedule declared in Python, for worker processes.

Workers import it with ``--import tests.scheduler.python_schedules``.

Only worker processes import this module: in the test process it would add the schedule to
every later ``load_definitions`` call.
"""

from __future__ import annotations

import corequeue
from testing.schedule_jobs import Tick

corequeue.schedule("every-2s", job=Tick("python"), cron="* * * * * */2")
