"""Fuzzing ``run_in_worker()`` (issue 18): arbitrary text and numbers for each option and for
the parameters, on both databases. Whatever comes in, the outcome is a stored job that reads
back as given, or a corequeue error naming what was refused, with nothing inserted."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corequeue.core.errors import CorequeueError
from corequeue.core.params import decode_params
from corequeue.store import schema
from corequeue.store.queries import Store
from testing.reliability_jobs import Touch

#: Any code point, lone surrogates and NUL included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),  # NaN and the infinities included
    st.floats(min_value=-1e15, max_value=1e15),
)
TIMES = st.one_of(
    st.timedeltas(),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(
        timezones=st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23)))
    ),
)
VALUES = st.one_of(st.none(), st.booleans(), ANY_TEXT, NUMBERS, TIMES)
PARAMETERS = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        ANY_TEXT,
        NUMBERS,
        st.integers(4000, 6000).map(lambda digits: 10**digits),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
OPTIONS = ("queue", "delay", "priority", "retries", "unique_key", "timeout")
CASES = st.one_of(
    st.tuples(st.sampled_from(OPTIONS), VALUES),
    st.tuples(st.just("parameter"), PARAMETERS),
)


def _count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.jobs)).scalar_one())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=CASES)
def test_run_in_worker_stores_or_refuses_by_name(store: Store, case: tuple[str, Any]) -> None:
    what, value = case
    before = _count(store)
    job = Touch("runs.jsonl", value if what == "parameter" else 1)
    options = {} if what == "parameter" else {what: value}
    try:
        handle = job.run_in_worker(**options)
    except CorequeueError as exc:
        named = "parameter 'key'" if what == "parameter" else f"{what}="
        assert named in str(exc), (case, str(exc))
        assert _count(store) == before
        return
    record = handle.refresh().record
    assert record is not None
    assert _count(store) == before + 1
    if what == "parameter":
        assert decode_params(record.params) == (("runs.jsonl", value), {}) or value != value
    elif what in ("queue", "unique_key", "priority") and value is not None:
        assert getattr(record, what) == value
