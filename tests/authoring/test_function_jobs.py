"""Writing jobs (issue 20), in-process and against both databases: function jobs, the job
context, typed arguments, the retry policy, hooks, and a missing job's refresh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import corequeue
from corequeue import JobEvent, JobNotFound, JobParamsError, JobState, registry, runtime
from corequeue.core import limits
from corequeue.store.queries import Store
from corequeue.testing.inline import InlineJobs
from testing import function_jobs as fj


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def events() -> Iterator[list[JobEvent]]:
    seen: list[JobEvent] = []
    for event in corequeue.hooks.EVENTS:
        corequeue.on(event)(seen.append)
    try:
        yield seen
    finally:
        for event in corequeue.hooks.EVENTS:
            corequeue.hooks.remove(event, seen.append)


# -- function jobs --------------------------------------------------------------------------


def test_a_function_job_is_registered_as_module_function_and_by_alias() -> None:
    assert fj.plain.name == "testing.function_jobs.plain"
    assert registry.resolve("testing.function_jobs.plain") is fj.plain.job_class
    assert registry.resolve("async-plain") is fj.async_plain.job_class


def test_a_plain_call_runs_the_function_in_process(tmp_path: Path) -> None:
    assert fj.plain(str(tmp_path / "r"), 4) == 8
    assert lines(tmp_path / "r")[0].get("ctx") is None  # not a job: no context


def test_a_parameter_named_like_an_option_is_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match=r"parameter named 'delay'.*rename"):

        @corequeue.job
        def bad(user_id: int, delay: int) -> None: ...


def test_unknown_options_and_non_functions_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        corequeue.job(queues="x")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="decorates functions"):
        corequeue.job(fj.ClassJob)
    with pytest.raises(TypeError, match="exception classes"):
        corequeue.job(retry_on=("ValueError",))  # type: ignore[call-overload]


def test_function_class_and_async_jobs_run_inline_with_their_context(tmp_path: Path) -> None:
    path = str(tmp_path / "r.jsonl")
    with InlineJobs() as inline:
        a = fj.plain.run_in_worker(path, 1, priority=9)
        b = fj.async_plain.run_in_worker(path, 2, queue="q2")
        c, d = corequeue.enqueue_many([fj.plain.call(path, 3), fj.ClassJob(path, 4)])
    assert [h.wait() for h in (a, b, c, d)] == [2, 6, 6, 16]
    got = lines(tmp_path / "r.jsonl")
    assert [g["tag"] for g in got] == ["plain", "async", "plain", "class"]
    ctx = got[0]["ctx"]
    assert ctx["id"] == str(a.id) and ctx["priority"] == "9" and ctx["attempt"] == "1"
    assert ctx["name"] == "testing.function_jobs.plain" and ctx["queue"] == "default"
    assert ctx["source"].endswith(f"test_function_jobs.py:{_line_of('priority=9')}")
    assert got[1]["ctx"]["queue"] == "q2" and got[1]["ctx"]["name"].endswith("async_plain")
    assert got[3]["ctx"]["name"] == "testing.function_jobs.ClassJob"
    assert corequeue.current_job() is None
    assert len(inline.handles) == 4


def _line_of(text: str) -> int:
    source = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if text in line and "run_in_worker" in line)


def test_middleware_sees_the_context(tmp_path: Path) -> None:
    path = str(tmp_path / "r.jsonl")
    with InlineJobs(middleware=["tests.authoring.test_function_jobs.ContextMiddleware"]):
        fj.plain.run_in_worker(path, 1)
    assert SEEN_BY_MIDDLEWARE[-1].name == "testing.function_jobs.plain"


SEEN_BY_MIDDLEWARE: list[Any] = []


class ContextMiddleware:
    def __init__(self, run_job: Any) -> None:
        self.run_job = run_job

    def __call__(self, job: Any) -> Any:
        SEEN_BY_MIDDLEWARE.append(corequeue.current_job())
        return self.run_job(job)


# -- the retry policy -----------------------------------------------------------------------


def test_discard_on_fails_at_once_despite_retries(tmp_path: Path) -> None:
    path = str(tmp_path / "r.jsonl")
    with InlineJobs(raise_errors=False):
        handle = fj.discarded.run_in_worker(path)
    assert handle.state is JobState.FAILED and handle.attempts == 1
    assert "not retried: ValueError is in discard_on" in (handle.error_message or "")


def test_retry_on_and_should_retry(tmp_path: Path) -> None:
    path = str(tmp_path / "r.jsonl")
    with InlineJobs(raise_errors=False):
        only = fj.only_timeouts.run_in_worker(path)
        asked = fj.ShouldRetry(path).run_in_worker()
    assert only.attempts == 1 and "not in retry_on" in (only.error_message or "")
    assert asked.attempts == 2 and "should_retry" in (asked.error_message or "")


# -- hooks ----------------------------------------------------------------------------------


def test_hooks_fire_once_each_and_a_raising_hook_changes_nothing(
    tmp_path: Path, events: list[JobEvent]
) -> None:
    def boom(event: JobEvent) -> None:
        raise RuntimeError("hook failure")

    for name in corequeue.hooks.EVENTS:
        corequeue.on(name)(boom)
    try:
        with InlineJobs():
            handle = fj.plain.run_in_worker(str(tmp_path / "r"), 5)
    finally:
        for name in corequeue.hooks.EVENTS:
            corequeue.hooks.remove(name, boom)
    assert handle.wait() == 10
    assert [(e.event, e.job_id) for e in events] == [
        ("job_enqueued", handle.id),  # inline too, before the job runs
        ("job_started", handle.id),
        ("job_finished", handle.id),
    ]
    assert events[2].outcome == "succeeded" and events[1].job is not None


def test_hooks_setting_loads_event_and_path(events: list[JobEvent]) -> None:
    corequeue.hooks.load(["job_lost:tests.authoring.test_function_jobs.lost_hook"])
    try:
        context = corequeue.JobContext(1, "x", "q", 0, 1, 1, None, None, "w", "")
        corequeue.hooks.fire(JobEvent("job_lost", context, "lost"))
    finally:
        corequeue.hooks.remove("job_lost", lost_hook)
    assert LOST == [1]
    with pytest.raises(corequeue.ConfigError, match=r"EVENT:module\.function"):
        corequeue.hooks.load(["job_nope:tests.authoring.test_function_jobs.lost_hook"])


LOST: list[int] = []


def lost_hook(event: JobEvent) -> None:
    LOST.append(event.job_id)


# -- against the databases ------------------------------------------------------------------


def count(store: Store) -> int:
    return sum(n for _, _, n in store.job_count_many())


def test_typed_mismatch_is_refused_with_nothing_inserted(store: Store) -> None:
    with pytest.raises(JobParamsError, match="parameter 'amount' expects Decimal, got str"):
        corequeue.enqueue_many([fj.charge.call(1, "2.00"), fj.charge.call(2, "two")])
    with pytest.raises(JobParamsError, match="parameter 'order_id' expects int, got str"):
        fj.charge.run_in_worker("3", "7.00")
    assert count(store) == 0
    handle = fj.charge.run_in_worker(3, "7.00")
    record = store.job_get(handle.id)
    assert record is not None and '"decimal"' in record.params


def test_function_jobs_take_the_same_flow_control_options_as_classes(store: Store) -> None:
    rows: list[Any] = []

    def keep(prepared: Any, connection: Any) -> None:
        rows.extend(p.row for p in prepared)
        return None  # not taken: the store inserts them

    remove = runtime.add_interceptor(keep)
    try:
        fj.charge.run_in_worker(1, "7.00", limit_key="tenant:9", concurrency_limit=2)
        fj.charge.run_in_worker(2, "7.00", limit_key="tenant:9", rate_limit="5/m")
    finally:
        remove()
    key = limits.job_key(fj.charge.name, "tenant:9")
    assert [(r.concurrency_key, r.concurrency_limit) for r in rows] == [(key, 2), ("", None)]
    assert [(r.rate_key, r.rate_limit) for r in rows] == [("", None), (key, (5, 60.0))]
    assert count(store) == 2


@pytest.mark.parametrize("option", ["concurrency_limit", "rate_limit"])
def test_a_parameter_named_like_a_limit_option_is_refused_at_decoration(option: str) -> None:
    namespace: dict[str, Any] = {"corequeue": corequeue}
    source = f"@corequeue.job\ndef bad(user_id: int, {option}: int) -> None: ...\n"
    with pytest.raises(TypeError, match=rf"parameter named '{option}'.*rename"):
        exec(source, namespace)


def test_job_enqueued_fires_after_commit_and_never_after_rollback(
    store: Store, events: list[JobEvent]
) -> None:
    plain = fj.plain.run_in_worker("p", 1)
    assert [(e.event, e.job_id) for e in events] == [("job_enqueued", plain.id)]
    events.clear()
    with store.engine.connect() as conn:
        with conn.begin():
            kept = fj.plain.run_in_worker("p", 2, connection=conn)
            assert events == []  # not committed yet
        assert [e.job_id for e in events] == [kept.id]
        events.clear()
        trans = conn.begin()
        fj.plain.run_in_worker("p", 3, connection=conn)
        trans.rollback()
        with conn.begin():
            conn.execute(sa.text("SELECT 1"))  # a later commit on the same connection
    assert events == []
    with Session(store.engine) as session:
        in_session = fj.plain.run_in_worker("p", 4, connection=session)
        assert events == []
        session.commit()
        session.commit()
    assert [e.job_id for e in events] == [in_session.id]
    dup = fj.plain.run_in_worker("p", 5, unique_key="k")
    events.clear()
    assert fj.plain.run_in_worker("p", 6, unique_key="k").id == dup.id
    assert events == []  # a unique key's existing job: nothing enqueued


def test_refresh_of_a_missing_job_raises_a_corequeue_error(store: Store) -> None:
    with pytest.raises(JobNotFound, match="no job with id 999: it was deleted or pruned"):
        corequeue.JobHandle(999, store=store).refresh()
    with store.engine.connect() as conn:
        trans = conn.begin()
        handle = fj.plain.run_in_worker("p", 1, connection=conn)
        trans.rollback()
    with pytest.raises(corequeue.CorequeueError, match="rolled back"):
        handle.refresh()


def test_the_python_apis_refusals_are_in_peoples_terms(store: Store) -> None:
    handle = fj.plain.run_in_worker("p", 1, unique_key="k")
    api = corequeue.get_store()
    now = datetime.now(UTC)
    with pytest.raises(corequeue.InvalidTransition) as refused:
        api.job_retry(handle.id, now=now)
    assert str(refused.value) == (
        f"job {handle.id} is waiting to run: only failed or cancelled jobs can be retried "
        "(it has not run yet)"
    )
    api.job_cancel(handle.id, now=now)
    with pytest.raises(corequeue.InvalidTransition, match=f"^job {handle.id} is already cancel"):
        api.job_cancel(handle.id, now=now)
    fj.plain.run_in_worker("p", 2, unique_key="k")  # holds the key now
    with pytest.raises(corequeue.UniqueViolation, match="cancel that one first"):
        api.job_retry(handle.id, now=now)
    with pytest.raises(JobNotFound, match=r"^no job with id 999: it was deleted or pruned"):
        api.job_cancel(999, now=now)
    assert api.job_delete(999) is False


def test_class_attribute_policy_and_decimal_from_text(store: Store) -> None:
    assert fj.ShouldRetry.retry_on == () and fj.discarded.job_class.discard_on == (ValueError,)
    handle = fj.charge.run_in_worker(1, Decimal("1.5"))
    assert store.job_get(handle.id) is not None
