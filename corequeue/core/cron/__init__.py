"""Cron due-times: when a schedule's occurrences fall, and which one to enqueue now.

Everything that decides when a schedule fires lives here: validating a schedule, listing the
occurrences of its expression in its time zone (across DST changes), and the catch-up decision
:func:`due`. This package never reads the clock, never touches the database, never sleeps and never
draws a random number: ``now`` and the stored state are arguments, so every worker of a fleet that
asks the same question (with the same time zone database) gets the same answer. Instants go in and
come out as aware UTC datetimes.

Expressions are croniter's syntax, read by croniter and then iterated here, in local wall-clock
time, so that DST is handled by the rule below rather than by croniter:

* five fields ``minute hour day-of-month month day-of-week``, and an optional sixth field for
  **seconds, written last** (croniter's default, ``second_at_beginning=False``):
  ``* * * * * */2`` fires every two seconds, ``0 3 * * * 30`` at 03:00:30 (and
  ``*/2 * * * * *`` every second of every even minute: seconds are not the first field);
* ``@hourly``, ``@daily`` (= ``@midnight``), ``@weekly`` (Sunday), ``@monthly``, ``@yearly``
  (= ``@annually``);
* ``*``, lists, ranges, steps over ranges exactly as cron defines them (``5-59/15`` is 5, 20, 35,
  50; ``a-a`` is the single value ``a``), names of months and days (``jan``, ``mon-fri``), Sunday as
  0 or 7, ``L`` (last day of the month), ``fri#2`` (second Friday), ``L5`` (last Friday);
* when both day fields are restricted a day matches if **either** does (classic cron, croniter's
  ``day_or=True``; ``*/2`` counts as restricted); when one of them is ``*`` the other one decides;
* refused, with a :class:`~corequeue.core.errors.ConfigError`: a 7th (year) field, ``H`` and ``R``
  (hashed and random values would differ between workers), ``W`` (nearest weekday), and
  expressions that match no date at all (``0 0 30 2 *``).

Time zones and DST (the rule of Vixie cron and cronie). An expression is matched against the wall
clock of the schedule's zone. Like cron, it is a *fixed-time* schedule unless its minute or its hour
field starts with ``*`` (``0 * * * *``, ``*/30 * * * *``, ``@hourly``, ``* * * * * */2``), which
makes it a *wildcard* schedule.

* Fixed-time schedules fire once per matching wall-clock time, at the first instant the local
  clock reads that time or later. A wall time skipped by a spring-forward gap fires once, at the
  end of the gap, however long (``30 2 * * *`` in Europe/Paris on 2024-03-31 fires at 03:00 CEST);
  a wall time repeated by a fall-back fires once, at its first occurrence (the summer-time one).
* Wildcard schedules fire at every instant the local clock reads a matching time, so they keep
  their rhythm in real time: across a one-hour change no run is doubled or lost. In Europe/Paris
  ``*/30 * * * *`` fires every 30 real minutes across both changes (on 2024-03-31 at 01:30 CET then
  03:00 CEST; on 2024-10-27 at 02:00 and 02:30 CEST, then 02:00 and 02:30 CET, then 03:00 CET)
  and ``0 * * * *`` every real hour (23 runs on the short day, 25 on the long one; the wall time
  02:00 never shows on 2024-03-31 and shows twice, an hour apart, on 2024-10-27).
* Two wall times that land on the same instant fire once: occurrences are strictly increasing.

The modules, in the order they build on each other: ``pattern`` (a compiled expression and which
wall-clock dates and times it matches), ``zones`` (time zones: wall clock to instants and back),
``expression`` (reading and validating a schedule), ``occurrences`` (a schedule's instants, in
order) and ``catch_up`` (the decision :func:`due`). Import the names below from this package.
"""

from corequeue.core.cron.catch_up import Due, due
from corequeue.core.cron.expression import CronSchedule, MissedPolicy, parse_schedule
from corequeue.core.cron.occurrences import (
    next_occurrence,
    occurrences_between,
    previous_occurrence,
)

__all__ = [
    "CronSchedule",
    "Due",
    "MissedPolicy",
    "due",
    "next_occurrence",
    "occurrences_between",
    "parse_schedule",
    "previous_occurrence",
]
