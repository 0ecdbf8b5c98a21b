"""Flow control's public side (issue 23): job limits as class attributes and per-call options,
``pause_queue`` / ``resume_queue``, ``[tool.corequeue.queue.NAME]`` and ``corequeue queues``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import corequeue
from corequeue import flow, registry
from corequeue.core import limits
from corequeue.core.errors import ConfigError, JobParamsError
from corequeue.jobs import EnqueueOptions, Job, prepare, register_job
from corequeue.store.queries import Store
from testing.faults import run_cli


@register_job
class PerTenant(Job):
    concurrency_limit = 1
    rate_limit = "10/s"

    def __init__(self, tenant: int) -> None:
        self.tenant = tenant

    def default_limit_key(self) -> str:
        return f"tenant:{self.tenant}"

    def run(self) -> None:
        pass


@register_job
class Plain(Job):
    def run(self) -> None:
        pass


def _row(job: Job, **options: object):  # type: ignore[no-untyped-def]
    return prepare(job, EnqueueOptions(**options), now=datetime.now(UTC), source="t").row  # type: ignore[arg-type]


def test_class_limits_and_default_limit_key_reach_the_row() -> None:
    row = _row(PerTenant(42))
    name = registry.job_name(PerTenant)
    assert row.concurrency_key == row.rate_key == limits.job_key(name, "tenant:42")
    assert (row.concurrency_limit, row.rate_limit) == (1, (10, 1.0))


def test_per_call_options_win_over_the_class() -> None:
    row = _row(PerTenant(1), limit_key="tenant:x", concurrency_limit=3, rate_limit="5/m")
    assert row.concurrency_key.endswith(":tenant:x")
    assert (row.concurrency_limit, row.rate_limit) == (3, (5, 60.0))
    plain = _row(Plain())
    assert (plain.concurrency_key, plain.rate_key, plain.concurrency_limit) == ("", "", None)
    keyed = _row(Plain(), concurrency_limit=2, limit_key="k")
    assert keyed.concurrency_key == limits.job_key(registry.job_name(Plain), "k")
    assert keyed.rate_key == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency_limit": 0}, "concurrency_limit=0"),
        ({"rate_limit": "fast"}, "rate_limit='fast'"),
        ({"concurrency_limit": 1, "limit_key": "x" * 300}, "limit_key"),
    ],
)
def test_bad_limits_are_refused_at_enqueue(options: dict[str, object], message: str) -> None:
    with pytest.raises(JobParamsError, match=message):
        _row(Plain(), **options)


def test_queue_limits_from_configuration() -> None:
    got = flow.queue_limits({"mail": {"concurrency_limit": 2, "rate_limit": "100/m"}, "x": {}})
    assert got == {"mail": (2, limits.Rate(100, 60.0)), "x": (None, None)}
    with pytest.raises(ConfigError, match=r"\[tool.corequeue.queue.mail\].*unknown key"):
        flow.queue_limits({"mail": {"concurency_limit": 2}})
    with pytest.raises(ConfigError, match=r"\[tool.corequeue.queue.mail\].*rate_limit"):
        flow.queue_limits({"mail": {"rate_limit": "lots"}})


def test_pause_and_resume_queue(store: Store) -> None:  # the configured store
    corequeue.pause_queue("mail")
    assert [(q.name, q.paused) for q in store.queue_list(now=datetime.now(UTC))] == [("mail", True)]
    corequeue.resume_queue("mail")
    assert not store.queue_list(now=datetime.now(UTC))[0].paused
    with pytest.raises(ConfigError):
        corequeue.pause_queue("")


def test_the_queues_command(store: Store, database_url: str) -> None:
    def cli(*args: str) -> tuple[int, str]:
        done = run_cli([*args, "--database-url", database_url])
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout

    store.queue_configure({"mail": (2, limits.Rate(100, 60.0))}, now=datetime.now(UTC))
    assert cli("queues", "pause", "mail") == (0, "queue mail: paused\n")
    code, out = cli("queues", "list", "--json")
    assert code == 0
    (mail,) = json.loads(out)
    assert mail["name"] == "mail" and mail["paused"] is True
    assert (mail["concurrency_limit"], mail["rate_limit"]) == (2, "100/m")
    code, out = cli("queues")
    assert code == 0 and "mail" in out and "paused" in out and "100/m" in out
    assert cli("queues", "resume", "mail")[0] == 0
    assert not store.queue_list(now=datetime.now(UTC))[0].paused
    code, _ = cli("queues", "pause")
    assert code != 0
