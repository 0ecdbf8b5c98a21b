"""The corequeue tables, built once with SQLAlchemy Core for SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from corequeue.core.states import FINAL_STATES, JobState, Outcome

#: Bump when the tables change, and add the step to ``store.migration.UPGRADES``.
SCHEMA_VERSION = 5


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every dialect.

    SQLite stores naive UTC text (which sorts correctly); PostgreSQL a timestamptz.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: corequeue stores aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: Any) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


metadata = sa.MetaData()

jobs = sa.Table(
    "corequeue_jobs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("run_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("timeout", sa.Float),
    sa.Column("unique_key", sa.String(255), nullable=False, server_default=""),
    sa.Column("lease", sa.String(32)),
    sa.Column("worker_id", sa.String(36)),
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("source", sa.String(500), nullable=False, server_default=""),
    # Version 2: attempts lost in a row with their worker, and deferrals using no attempt.
    sa.Column("worker_losses", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deferrals", sa.Integer, nullable=False, server_default="0"),
    # Version 3 (flow control): the slot keys of the job's own limits ('' for none).
    sa.Column("concurrency_key", sa.String(600), nullable=False, server_default=""),
    sa.Column("rate_key", sa.String(600), nullable=False, server_default=""),
    # Version 4 (uniqueness policies, corequeue.core.uniqueness): the key while this job may
    # hold it ('' once released), and the policy the job was enqueued with ('' without a key).
    sa.Column("unique_hold", sa.String(255), nullable=False, server_default=""),
    sa.Column("unique_until", sa.String(32), nullable=False, server_default=""),
    # Version 4: the message headers (a JSON object, e.g. a trace context), NULL for none.
    sa.Column("headers", sa.Text),
    sa.CheckConstraint(_in("state", JobState), name="ck_corequeue_jobs_state"),
    sa.CheckConstraint(
        f"(finished_at IS NOT NULL) = ({_in('state', FINAL_STATES)})",
        name="ck_corequeue_jobs_finished_iff_final",
    ),
    sa.CheckConstraint(
        "(lease IS NOT NULL) = (state = 'running')", name="ck_corequeue_jobs_lease_iff_running"
    ),
    # A waiting job always has an attempt left, so a claim never goes past max_attempts.
    sa.CheckConstraint(
        "attempts >= 0 AND max_attempts >= 1 AND attempts <= max_attempts"
        " AND (state <> 'requested' OR attempts < max_attempts)",
        name="ck_corequeue_jobs_attempt_counts",
    ),
    # SQLite: AUTOINCREMENT, so that a pruned job's id is never handed to another job.
    sqlite_autoincrement=True,
)

_ready = sa.text("state = 'requested'")
#: The claim query walks this small partial index in order: it holds waiting jobs only, so its
#: size does not grow with finished history.
sa.Index(
    "ix_corequeue_jobs_ready",
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.id,
    postgresql_where=_ready,
    sqlite_where=_ready,
)
_unique_held = sa.text("unique_hold <> ''")
#: Version 4: one job holds a key per job name, enforced by the database. What the hold covers
#: (waiting, running, a period after the end) is the job's policy: corequeue.core.uniqueness.
sa.Index(
    "ux_corequeue_jobs_unique_hold",
    jobs.c.name,
    jobs.c.unique_hold,
    unique=True,
    postgresql_where=_unique_held,
    sqlite_where=_unique_held,
)
_running = sa.text("state = 'running'")
sa.Index(
    "ix_corequeue_jobs_running",
    jobs.c.worker_id,
    postgresql_where=_running,
    sqlite_where=_running,
)
_finished = sa.text("finished_at IS NOT NULL")
sa.Index(
    "ix_corequeue_jobs_finished",
    jobs.c.finished_at,
    postgresql_where=_finished,
    sqlite_where=_finished,
)

# Version 5 (the dashboard with millions of rows): indexes that history does not slow down.
_unsuccessful = sa.text("state IN ('failed', 'cancelled')")
#: Failed and cancelled jobs by state and queue: their exact counts, and the history filtered
#: by either state, stay index scans however many jobs succeeded (none of those is in it).
sa.Index(
    "ix_corequeue_jobs_unsuccessful",
    jobs.c.state,
    jobs.c.queue,
    jobs.c.id,
    postgresql_where=_unsuccessful,
    sqlite_where=_unsuccessful,
)
#: One job name's finished jobs by end time (its page's windows; the names in the table, by a
#: skip scan). PostgreSQL also keeps the state and start in it: the windows read no rows.
sa.Index(
    "ix_corequeue_jobs_name_finished",
    jobs.c.name,
    jobs.c.finished_at,
    postgresql_where=_finished,
    sqlite_where=_finished,
    postgresql_include=["state", "started_at"],
)
#: Enqueue times, for the history's date filters. On PostgreSQL a BRIN index (ids and
#: enqueue times grow together): a few pages, no work when a job changes state.
sa.Index("ix_corequeue_jobs_created", jobs.c.created_at, postgresql_using="brin")

attempts = sa.Table(
    "corequeue_attempts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column(
        "job_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("corequeue_jobs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("lease", sa.String(32), nullable=False),
    sa.Column("worker_id", sa.String(36)),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("error_type", sa.String(255)),
    sa.Column("error_message", sa.Text),
    sa.Column("traceback", sa.Text),
    # Version 4: the retry rule that decided an errored attempt's ending ("retry_on", ...).
    sa.Column("rule", sa.String(32)),
    sa.CheckConstraint(_in("outcome", Outcome), name="ck_corequeue_attempts_outcome"),
    sqlite_autoincrement=True,
)
sa.Index("ix_corequeue_attempts_job", attempts.c.job_id)

workers = sa.Table(
    "corequeue_workers",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("queues", sa.Text, nullable=False),  # JSON list; [] means every queue
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("last_beat_at", UTCDateTime, nullable=False),
    sa.Column("stats", sa.Text, nullable=False, server_default="{}"),  # JSON
)

schedules = sa.Table(
    "corequeue_schedules",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("job", sa.String(255), nullable=False),
    sa.Column("expression", sa.String(255), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("last_occurrence", UTCDateTime),  # the last occurrence enqueued
    sa.Column("last_job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Version 3: a paused schedule fires nothing (its last occurrence waits for its resume).
schedules.append_column(sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()))

#: Version 3: each queue's flow-control state (paused, limits); a queue without a row has none.
queues = sa.Table(
    "corequeue_queues",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("concurrency_limit", sa.Integer),
    sa.Column("rate_count", sa.Integer),
    sa.Column("rate_period", sa.Float),
    sa.Column("updated_at", UTCDateTime),
)

#: Version 3: the slots of every limit (corequeue.core.limits): a concurrency limit of N is N
#: slots held by running attempts, a rate limit N slots each free a period after its start.
limit_slots = sa.Table(
    "corequeue_limit_slots",
    metadata,
    sa.Column("kind", sa.String(1), primary_key=True),
    sa.Column("key", sa.String(600), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True),
    sa.Column("period", sa.Float),  # rate slots: seconds
    sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    sa.Column("attempt", sa.Integer),
    sa.Column("started_at", UTCDateTime),
    sa.Column("free_at", UTCDateTime),  # rate slots: started_at + period
)

meta = sa.Table(
    "corequeue_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
