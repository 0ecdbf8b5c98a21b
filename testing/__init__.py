"""The project's own test harness (not shipped; the pytest plugin that ships is
``corequeue.testing``).

- ``faults``: real ``corequeue run`` processes (:class:`~testing.faults.WorkerProcess`), a TCP
  proxy that cuts the database, polling with a deadline;
- ``e2e``: the ``workers`` fixture, which starts such processes in a test's directory;
- ``jobs``, ``reliability_jobs``, ``schedule_jobs``, ``slow_start``: job modules that worker
  processes import (``--import testing.jobs``);
- ``store_support``: building jobs and claiming them in store-level tests;
- ``install_browser.sh``: Chromium for the dashboard's browser tests.

Tests import from here, never from one another.
"""
