"""The schedule-sync policy: insert, touch, reset, defer and delete, decided from rows and a
configuration alone (the store applies the plan; tests/scheduler run it on databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corequeue.core.schedules import (
    ScheduleSpec,
    StoredSchedule,
    SyncPlan,
    SyncStep,
    plan_sync,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SPEC = ScheduleSpec("nightly", "app.jobs.report", "0 3 * * *", "UTC")


def stored(
    spec: ScheduleSpec = SPEC,
    *,
    first_seen: datetime = NOW - timedelta(days=1),
    updated: datetime = NOW - timedelta(seconds=10),
) -> StoredSchedule:
    return StoredSchedule(spec.name, spec.job, spec.expression, spec.timezone, first_seen, updated)


def plan(rows: list[StoredSchedule], specs: list[ScheduleSpec], **kw: object) -> SyncPlan:
    return plan_sync({r.name: r for r in rows}, specs, now=NOW, **kw)  # type: ignore[arg-type]


def test_a_new_schedule_is_inserted() -> None:
    assert plan([], [SPEC]) == SyncPlan((), ((SyncStep.INSERT, SPEC, None),), frozenset())


def test_a_schedule_stored_as_configured_is_touched() -> None:
    row = stored()
    assert plan([row], [SPEC]).steps == ((SyncStep.TOUCH, SPEC, row),)


def test_a_changed_definition_resets_the_schedule() -> None:
    row = stored()
    changed = ScheduleSpec(SPEC.name, SPEC.job, "0 4 * * *", SPEC.timezone)
    result = plan([row], [changed])
    assert result.steps == ((SyncStep.RESET, changed, row),)
    assert result.deferred == frozenset()


def test_a_newer_live_definition_written_by_a_later_worker_is_deferred_to() -> None:
    # This worker loaded its configuration an hour ago; another wrote the row since.
    row = stored(first_seen=NOW - timedelta(minutes=5))
    old = ScheduleSpec(SPEC.name, SPEC.job, "0 4 * * *", SPEC.timezone)
    result = plan([row], [old], loaded_at=NOW - timedelta(hours=1))
    assert result.steps == ()
    assert result.deferred == {SPEC.name}


def test_a_newer_definition_nobody_keeps_alive_is_reset() -> None:
    row = stored(first_seen=NOW - timedelta(minutes=5), updated=NOW - timedelta(minutes=5))
    old = ScheduleSpec(SPEC.name, SPEC.job, "0 4 * * *", SPEC.timezone)
    result = plan([row], [old], loaded_at=NOW - timedelta(hours=1))
    assert result.steps == ((SyncStep.RESET, old, row),)


def test_an_unconfigured_schedule_is_deleted_only_once_stale() -> None:
    fresh = stored(ScheduleSpec("fresh", "j", "* * * * *", "UTC"))
    stale = stored(
        ScheduleSpec("stale", "j", "* * * * *", "UTC"), updated=NOW - timedelta(seconds=91)
    )
    result = plan([fresh, stale], [])
    assert result.deletes == (("stale", stale.updated_at),)
    assert result.steps == ()
    longer = plan([fresh, stale], [], stale_after=timedelta(minutes=5))
    assert longer.deletes == ()


def test_steps_come_in_name_order() -> None:
    specs = [ScheduleSpec(n, "j", "* * * * *", "UTC") for n in ("c", "a", "b")]
    assert [spec.name for _, spec, _ in plan([], specs).steps] == ["a", "b", "c"]
