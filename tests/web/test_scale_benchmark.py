"""benchmarks/dashboard_scale.py runs end to end (on a few thousand rows: the 2,000,000-row
figures come from running it by hand, not from a timed test: whether a page is over its budget
here depends on the machine's load, so the test checks the table, not the times)."""

from __future__ import annotations

import os
import re
from datetime import date

import pytest

from benchmarks import dashboard_scale
from tests.conftest import DEFAULT_PG


def test_the_dashboard_benchmark_seeds_measures_and_prints_every_page(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = os.environ.get("COREQUEUE_TEST_DATABASE_URL", DEFAULT_PG)
    code = dashboard_scale.main(["--admin-url", admin, "--rows", "3000", "--repeat", "2"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["page", "p50", "ms", "p95", "ms", "max", "ms"]
    measured = [line.split()[0] for line in out[1:-1]]
    [day] = {
        m.group(1) for line in measured if (m := re.search(r"from=(\d{4}-\d\d-\d\d)T", line))
    } - {"2020-01-01"}
    assert measured == dashboard_scale.pages(3000, date.fromisoformat(day))
    over = [line for line in out[1:-1] if line.endswith("  OVER")]
    summary = re.fullmatch(r"(\d+) page\(s\) over 300 ms at p95 \(3,000 rows\)", out[-1])
    assert summary is not None, out[-1]
    assert int(summary.group(1)) == len(over)
    assert code == (1 if over else 0)
