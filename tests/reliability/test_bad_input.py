"""Bad input: each gets a clear error (asserted as the user sees it) and no other job is
affected."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from corequeue import enqueue_many
from corequeue.core.errors import JobParamsError, SchemaError
from corequeue.core.params import encode_params
from corequeue.core.states import Outcome
from corequeue.executor.task import Task, run_task
from corequeue.store import schema
from corequeue.store.queries import Store
from testing.faults import run_cli
from testing.reliability_jobs import RaiseBase, Touch, run_counts
from tests.reliability.conftest import Spawner, attempts_by_job, state_counts


def _url(store: Store) -> str:
    return store.url.render_as_string(hide_password=False)


def test_unencodable_parameters_are_refused_at_enqueue(pg_store: Store, tmp_path: Path) -> None:
    good = Touch(str(tmp_path / "runs.jsonl"), "good").run_in_worker()
    with pytest.raises(JobParamsError) as info:
        Touch(str(tmp_path / "runs.jsonl"), object()).run_in_worker()
    assert "key" in str(info.value) and "object" in str(info.value)
    with pytest.raises(JobParamsError):  # a batch is all or nothing
        enqueue_many([Touch("x", 1), Touch("x", {1, 2})])
    assert state_counts(pg_store) == {"requested": 1}
    assert good.refresh().state.value == "requested"


def test_bad_rows_and_base_exceptions_fail_only_their_own_job(
    pg_store: Store, spawn: Spawner, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.jsonl")
    good = enqueue_many([Touch(log, i) for i in range(5)])
    unknown, not_json, truncated, not_object = enqueue_many(
        [Touch(log, f"bad-{i}") for i in range(4)]
    )
    system_exit = RaiseBase("SystemExit").run_in_worker()
    interrupt = RaiseBase("KeyboardInterrupt").run_in_worker()
    jobs = schema.jobs
    with pg_store.engine.begin() as conn:
        for job_id, values in (
            (unknown.id, {"name": "testing.reliability_jobs.NoSuchJob"}),
            (not_json.id, {"params": "not json"}),
            (truncated.id, {"params": '{"args": ["x"'}),
            (not_object.id, {"params": "[1, 2]"}),
        ):
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**values))
    # An unknown name waits for a worker that knows it, up to unknown_job_timeout: none here.
    worker = spawn(_url(pg_store), "--burst", env={"COREQUEUE_UNKNOWN_JOB_TIMEOUT": "0"})
    assert worker.wait_exit(60) == 0, worker.log()

    assert run_counts(log) == {i: 1 for i in range(5)}
    assert all(pg_store.job_get(h.id).state.value == "succeeded" for h in good)  # type: ignore[union-attr]
    attempts = attempts_by_job(pg_store)
    expected = {
        unknown.id: (
            "corequeue.core.errors.UnknownJobError",
            "no job is registered as 'testing.reliability_jobs.NoSuchJob': make sure the module "
            "that defines it is importable by the worker (--import MODULE, or `imports` in "
            "[tool.corequeue]) and that the class is decorated with @register_job "
            "(unresolvable for unknown_job_timeout = 0s since it was enqueued)",
        ),
        not_json.id: (
            "corequeue.core.errors.JobParamsError",
            f"job {not_json.id} (testing.reliability_jobs.Touch) has unusable parameters: stored "
            "value is not valid JSON (Expecting value: line 1 column 1 (char 0)): 'not json'; "
            "it may be corrupt or truncated, so the job cannot run: fix or delete it",
        ),
        truncated.id: (
            "corequeue.core.errors.JobParamsError",
            f"job {truncated.id} (testing.reliability_jobs.Touch) has unusable parameters: stored "
            "value is not valid JSON (Expecting ',' delimiter: line 1 column 14 (char 13)): "
            '\'{"args": ["x"\'; it may be corrupt or truncated, so the job cannot run: fix or '
            "delete it",
        ),
        not_object.id: (
            "corequeue.core.errors.JobParamsError",
            f"job {not_object.id} (testing.reliability_jobs.Touch) has unusable parameters: "
            "stored parameters must be an object with 'args' and 'kwargs', got '[1, 2]'",
        ),
        system_exit.id: ("SystemExit", "4"),
        interrupt.id: ("KeyboardInterrupt", "interrupted inside the job"),
    }
    for job_id, (error_type, message) in expected.items():
        (row,) = attempts[job_id]
        assert (row.outcome, row.error_type, row.error_message) == ("errored", error_type, message)
        job = pg_store.job_get(job_id)
        assert job is not None and job.state.value == "failed"
        assert job.error == f"{error_type}: {message}"
    assert state_counts(pg_store) == {"succeeded": 5, "failed": 6}


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-processes", "0", "max_processes = 0 (--max-processes) must be an integer >= 1"),
        (
            "--heartbeat-timeout",
            "abc",
            "heartbeat_timeout = 'abc' (--heartbeat-timeout) is not a duration: use seconds or "
            "text like '30s', '15m', '12h', '7d'",
        ),
        (
            "--grace-period",
            "-1",
            "grace_period = '-1' (--grace-period) is not a duration: use seconds or text like "
            "'30s', '15m', '12h', '7d'",
        ),
    ],
)
def test_an_invalid_option_is_one_clear_line(
    pg_store: Store, tmp_path: Path, flag: str, value: str, message: str
) -> None:
    job = Touch(str(tmp_path / "runs.jsonl"), "x").run_in_worker()
    result = run_cli(
        [
            "run",
            "--database-url",
            _url(pg_store),
            "--burst",
            "--heartbeat-interval",
            "0.5",
            flag,
            value,
        ]
    )
    assert result.returncode == 1
    assert result.stderr == f"corequeue: error: {message}\n"
    assert job.refresh().state.value == "requested"


def test_a_database_url_that_points_nowhere_exits_with_one_line() -> None:
    # Decision: at start-up an unreachable database is an error (exit 1, one line) rather than
    # a silent wait: a typo in a URL must be seen. Once running, the worker rides out outages.
    result = run_cli(["run", "--database-url", "postgresql://postgres@127.0.0.1:1/x"], timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        "corequeue: error: database unavailable at postgresql://postgres@127.0.0.1:1/x: "
        'connection failed: connection to server at "127.0.0.1", port 1 failed: '
        "Connection refused\n"
    )
    bad = run_cli(["run", "--database-url", "mysql://x@y/z"])
    assert bad.returncode == 1
    assert bad.stderr == (
        "corequeue: error: unsupported database 'mysql' in 'mysql://x@y/z': corequeue runs on "
        "sqlite:/// and postgresql:// URLs\n"
    )


def test_an_outdated_schema_is_refused_with_run_migrate(pg_store: Store, tmp_path: Path) -> None:
    job = Touch(str(tmp_path / "runs.jsonl"), "x").run_in_worker()
    meta = schema.meta
    with pg_store.engine.begin() as conn:
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="0"))
    try:
        result = run_cli(["run", "--database-url", _url(pg_store), "--burst"])
    finally:
        with pg_store.engine.begin() as conn:
            conn.execute(
                sa.update(meta)
                .where(meta.c.key == "schema_version")
                .values(value=str(schema.SCHEMA_VERSION))
            )
    where = pg_store.url.render_as_string(hide_password=True)
    assert result.returncode == 1
    assert result.stderr == (
        f"corequeue: error: the corequeue tables in {where} are at schema version 0, this "
        f"corequeue needs {schema.SCHEMA_VERSION}: run `corequeue migrate`\n"
    )
    assert job.refresh().state.value == "requested"


# -- issue 18: hostile values at enqueue, refused with the parameter's name, nothing inserted --


def _job_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.jobs)).scalar_one())


@pytest.mark.parametrize(
    ("value", "named", "why"),
    [
        ("bad \ud800 text", "'key'", "lone surrogate"),
        ({"k\udfff": 1}, "'key'", "lone surrogate"),
        ([1, {"x": "\udc80"}], "'key'[1]['x']", "lone surrogate"),
        (10**5000, "'key'", "more than 3900 digits"),
        (-(10**5000), "'key'", "more than 3900 digits"),
    ],
    ids=["surrogate", "surrogate-key", "nested-surrogate", "huge-int", "huge-negative-int"],
)
def test_parameters_that_break_later_are_refused_at_enqueue(
    store: Store, value: object, named: str, why: str
) -> None:
    with pytest.raises(JobParamsError) as info:
        Touch("runs.jsonl", value).run_in_worker()
    assert f"parameter {named}" in str(info.value) and why in str(info.value)
    assert _job_count(store) == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", math.nan),
        ("timeout", math.inf),
        ("timeout", 1e300),
        ("delay", math.nan),
        ("delay", math.inf),
        ("delay", 1e12),
        ("delay", timedelta.max),
        ("delay", 10**40),
        ("delay", datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))),
        ("priority", 2**31),
        ("priority", -(2**31) - 1),
        ("priority", 10**20),
        ("retries", 2**31 - 1),
        ("retries", 10**20),
        ("queue", "a\x00b"),
        ("queue", "q\ud800"),
        ("unique_key", "k\x00"),
        ("unique_key", "\udc80"),
    ],
)
def test_options_that_break_later_are_refused_at_enqueue(
    store: Store, option: str, value: object
) -> None:
    with pytest.raises(JobParamsError) as info:
        Touch("runs.jsonl", 1).run_in_worker(**{option: value})  # type: ignore[arg-type]
    assert f"{option}=" in str(info.value)
    with pytest.raises(JobParamsError, match=f"{option}="):
        enqueue_many([Touch("runs.jsonl", 2)], **{option: value})  # type: ignore[arg-type]
    assert _job_count(store) == 0


def test_the_column_bounds_themselves_are_stored_and_read_back(store: Store) -> None:
    far = datetime(9999, 12, 31, tzinfo=UTC)
    high = Touch("runs.jsonl", [10**3000, "ünïcode \U0001f600"]).run_in_worker(
        priority=2**31 - 1, retries=2**31 - 2, timeout=1e9, delay=far, queue="é" * 100
    )
    low = Touch("runs.jsonl", 1).run_in_worker(priority=-(2**31), unique_key="é" * 255)
    record = high.refresh().record
    assert record is not None
    assert (record.priority, record.max_attempts, record.timeout) == (2**31 - 1, 2**31 - 1, 1e9)
    assert record.run_at == far and record.queue == "é" * 100
    assert low.refresh().record is not None and low.record.priority == -(2**31)  # type: ignore[union-attr]
    assert _job_count(store) == 2


def test_a_result_that_cannot_be_stored_is_an_errored_attempt() -> None:
    task = Task(1, "lease", "testing.reliability_jobs.Touch", encode_params(("x", 1), {}), 1, None)
    result = run_task(task, lambda job: "half \ud800 a pair")
    assert result.outcome is Outcome.ERRORED
    assert result.result is None
    assert result.error_type == "corequeue.core.errors.JobParamsError"
    assert result.error_message == (
        "the job's return value cannot be stored: parameter return value contains a lone "
        "surrogate ('\\ud800'), which is not text: pass valid Unicode"
    )


# -- issue 18: a database newer than the code ------------------------------------------------


def _set_version(store: Store, version: int) -> None:
    meta = schema.meta
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(meta).where(meta.c.key == "schema_version").values(value=str(version))
        )


def test_a_newer_schema_refuses_inserts_and_migrate(store: Store, tmp_path: Path) -> None:
    _set_version(store, schema.SCHEMA_VERSION + 1)
    where = store.url.render_as_string(hide_password=True)
    newer = (
        f"the corequeue tables in {where} are at schema version {schema.SCHEMA_VERSION + 1}, "
        f"newer than this corequeue understands ({schema.SCHEMA_VERSION}): upgrade corequeue"
    )
    try:
        with pytest.raises(SchemaError) as info:
            Touch("runs.jsonl", 1).run_in_worker()
        assert str(info.value) == newer
        with store.engine.begin() as conn, pytest.raises(SchemaError):
            Touch("runs.jsonl", 1).run_in_worker(connection=conn)
        url = store.url.render_as_string(hide_password=False)
        migrate = run_cli(["migrate", "--database-url", url])
        assert (migrate.returncode, migrate.stdout) == (1, "")
        assert migrate.stderr == f"corequeue: error: {newer}\n"
        enqueued = run_cli(
            [
                *("enqueue", "--database-url", url, "--import", "testing.reliability_jobs"),
                *("rel-touch", "--args", '["runs.jsonl", 1]'),
            ]
        )
        assert (enqueued.returncode, enqueued.stderr) == (1, f"corequeue: error: {newer}\n")
        assert _job_count(store) == 0
    finally:
        _set_version(store, schema.SCHEMA_VERSION)
    Touch("runs.jsonl", 1).run_in_worker()  # refusals are not cached: fine once fixed
    assert _job_count(store) == 1


def test_the_version_is_checked_once_per_store(store: Store) -> None:
    Touch("runs.jsonl", 1).run_in_worker()
    statements: list[str] = []
    sa.event.listen(
        store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]), named=False
    )
    Touch("runs.jsonl", 2).run_in_worker()
    Touch("runs.jsonl", 3).run_in_worker(unique_key="k")
    assert not any("corequeue_meta" in s for s in statements), statements
