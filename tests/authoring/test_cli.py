"""The command line in users' terms (issue 20), on SQLite and PostgreSQL: job names as people
type them, parameters as named JSON values, a header row, typed arguments refused before
anything is stored, refusals said plainly, --log-level after the subcommand (each flag's
--help: tests/cli/test_help.py)."""

from __future__ import annotations

import json

import corequeue
from corequeue.cli import build_parser
from corequeue.store.queries import Store
from testing import function_jobs as fj
from testing.faults import run_cli

IMPORT = ["--import", "testing.function_jobs"]


def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    done = run_cli([*args, "--database-url", database_url, *IMPORT])
    return done.returncode, done.stdout, done.stderr


def test_jobs_list_by_alias_and_suffix_with_named_json(store: Store, database_url: str) -> None:
    charged = fj.charge.run_in_worker(3, "7.00")
    fj.async_plain.run_in_worker("p", 1)
    fj.ClassJob("p", 2).run_in_worker()

    code, out, err = cli(database_url, "jobs", "list", "--job", "charge", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["id"] == charged.id
    assert row["params"] == {"order_id": 3, "amount": "7.00"}  # no $cq tags

    for typed in ("async-plain", "ClassJob", "function_jobs.ClassJob"):
        code, out, err = cli(database_url, "jobs", "list", "--job", typed)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["id", "state", "queue"]  # the header row
        assert len(lines) == 2, out


def test_enqueue_refuses_a_typed_mismatch_with_nothing_inserted(
    store: Store, database_url: str
) -> None:
    code, out, err = cli(
        database_url, "enqueue", "testing.function_jobs.charge", "--args", '[3, "seven"]'
    )
    assert code == 1
    assert "parameter 'amount' expects Decimal, got str 'seven'" in err
    assert sum(n for _, _, n in store.job_count_many()) == 0
    code, out, err = cli(
        database_url, "enqueue", "testing.function_jobs.charge", "--args", '[3, "7.00"]', "--json"
    )
    assert code == 0, err
    record = store.job_get(json.loads(out)["id"])
    assert record is not None and '"decimal"' in record.params


def test_refusals_in_users_terms_and_log_level_after_the_subcommand(
    store: Store, database_url: str
) -> None:
    handle = fj.plain.run_in_worker("p", 1)
    code, _, err = cli(database_url, "jobs", "cancel", str(handle.id), "--log-level", "WARNING")
    assert code == 0, err
    code, _, err = cli(database_url, "jobs", "cancel", str(handle.id))
    assert code == 1 and f"job {handle.id} is already cancelled" in err
    assert "cannot take event" not in err
    code, _, err = cli(database_url, "jobs", "retry", str(handle.id))
    assert code == 0, err  # a cancelled job may be retried: it waits again
    code, _, err = cli(database_url, "jobs", "retry", str(handle.id))
    assert code == 1, err
    assert err.strip() == (
        f"corequeue: error: job {handle.id} is waiting to run: only failed or cancelled jobs "
        "can be retried (it has not run yet)"
    )
    for action in ("show", "retry", "cancel", "delete"):
        code, _, err = cli(database_url, "jobs", action, "999999")
        assert code == 1 and "error: no job with id 999999: it was deleted or pruned" in err


def test_top_level_log_level_still_works() -> None:
    args = build_parser().parse_args(["--log-level", "DEBUG", "stats"])
    assert args.log_level == "DEBUG"
    args = build_parser().parse_args(["stats", "--log-level", "ERROR"])
    assert args.log_level == "ERROR"
    assert build_parser().parse_args(["stats"]).log_level == "INFO"
    assert corequeue.current_job() is None
