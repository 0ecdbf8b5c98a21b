"""Job parameters as JSON text: what round-trips, what is refused, and how corrupt text fails."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corequeue.core.errors import JobParamsError
from corequeue.core.params import (
    TAG,
    Codec,
    decode_params,
    decode_value,
    encode_params,
    encode_value,
)

# -- round trips ------------------------------------------------------------------------------

fixed_offsets = st.builds(
    timezone,
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
        lambda minutes: timedelta(minutes=minutes)
    ),
)
zones = st.one_of(st.none(), st.just(UTC), fixed_offsets)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.datetimes(timezones=zones),
    st.dates(),
    st.times(timezones=zones),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
)
keys = st.one_of(st.text(max_size=8), st.just(TAG), st.just("v"))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (a tuple is not a list), and the same offset."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (datetime, time)):
        return a == b and a.utcoffset() == b.utcoffset()
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


@given(values)
def test_every_storable_value_round_trips_with_its_type(value: Any) -> None:
    assert same(decode_value(encode_value(value)), value)


@given(st.lists(values, max_size=3).map(tuple), st.dictionaries(st.text(), values, max_size=3))
def test_constructor_arguments_round_trip(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = encode_params(args, kwargs)
    decoded_args, decoded_kwargs = decode_params(text)
    assert same(decoded_args, args)
    assert same(decoded_kwargs, kwargs)


def test_a_dictionary_that_uses_the_tag_key_stays_a_dictionary() -> None:
    lookalike = {TAG: "datetime", "v": "2024-01-01T00:00:00"}
    assert decode_value(encode_value(lookalike)) == lookalike
    assert decode_value(encode_value({"outer": lookalike})) == {"outer": lookalike}


def test_tagged_types_are_plain_json_text() -> None:
    text = encode_value({"when": datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "n": Decimal("1.10")})
    assert text == (
        '{"when":{"$cq":"datetime","v":"2024-05-01T12:30:00+00:00"},'
        '"n":{"$cq":"decimal","v":"1.10"}}'
    )


def test_decimal_keeps_its_exponent_and_infinity() -> None:
    decoded = decode_value(encode_value([Decimal("1.10"), Decimal("-Infinity")]))
    assert [str(d) for d in decoded] == ["1.10", "-Infinity"]


def test_an_extra_codec_plugs_in() -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    codec = Codec(
        "point",
        lambda o: isinstance(o, Point),
        lambda p: [p.x, p.y],
        lambda v: Point(*v),
    )
    text = encode_params((Point(1, 2),), {}, codecs=[codec])
    (point,), _ = decode_params(text, codecs=[codec])
    assert isinstance(point, Point)
    assert (point.x, point.y) == (1, 2)


# -- refusals name the parameter --------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((Opaque(),), {}, "parameter 'user' is a tests.core.test_params.Opaque"),
        ((1, Opaque()), {}, "parameter 'args[1]' is a tests.core.test_params.Opaque"),
        ((), {"items": [1, 2, {3}]}, "parameter 'items'[2] is a builtins.set"),
        ((), {"config": {"db": b"x"}}, "parameter 'config'['db'] is a builtins.bytes"),
        ((), {"limits": (1, Opaque())}, "parameter 'limits'[1] is a tests.core.test_params"),
    ],
)
def test_an_unstorable_parameter_is_refused_by_name(
    args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(JobParamsError, match="cannot store") as raised:
        encode_params(args, kwargs, arg_names=["user"])
    assert named in str(raised.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(bad: float) -> None:
    with pytest.raises(JobParamsError, match=r"parameter 'scores'\[1\] is .*NaN or infinity"):
        encode_params((), {"scores": [1.0, bad]})


def test_a_dictionary_key_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(JobParamsError, match=r"parameter 'by_id' has a key 1 of type int"):
        encode_params((), {"by_id": {1: "a"}})


def test_a_value_that_contains_itself_is_refused_not_a_recursion_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(JobParamsError, match="parameter 'loop' is nested too deeply"):
        encode_params((), {"loop": loop})


def test_a_failing_codec_is_reported_against_the_parameter() -> None:
    def explode(value: Any) -> Any:
        raise RuntimeError("no primary key")

    codec = Codec("boom", lambda o: isinstance(o, Opaque), explode, lambda v: v)
    with pytest.raises(JobParamsError, match=r"parameter 'row' \(Opaque\).*no primary key"):
        encode_params((), {"row": Opaque()}, codecs=[codec])


def test_a_result_that_cannot_be_stored_is_refused() -> None:
    with pytest.raises(JobParamsError, match=r"parameter result\['f'\] is a builtins.function"):
        encode_value({"f": lambda: 0}, name="result")


# -- corrupt text -----------------------------------------------------------------------------

GOOD = encode_params((1, datetime(2024, 1, 1, tzinfo=UTC)), {"k": UUID(int=7)})


@pytest.mark.parametrize("cut", [1, len(GOOD) // 2, len(GOOD) - 1])
def test_truncated_parameters_raise_a_clear_error(cut: int) -> None:
    with pytest.raises(JobParamsError, match=r"not valid JSON.*corrupt or truncated"):
        decode_params(GOOD[:cut])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid JSON"),
        ("{'args': []}", "not valid JSON"),
        ('{"args":[NaN],"kwargs":{}}', "NaN is not valid JSON"),
        ('{"args":[Infinity],"kwargs":{}}', "Infinity is not valid JSON"),
        ("[1, 2]", "must be an object with 'args' and 'kwargs'"),
        ('{"args":{},"kwargs":{}}', "must be an object with 'args' and 'kwargs'"),
        ('{"args":[]}', "must be an object with 'args' and 'kwargs'"),
        ('{"args":[{"$cq":"pickle","v":"x"}],"kwargs":{}}', "unknown type tag 'pickle'"),
        ('{"args":[{"$cq":"date","v":"not a date"}],"kwargs":{}}', "stored date value"),
        ('{"args":[{"$cq":"timedelta","v":[1]}],"kwargs":{}}', "stored timedelta value"),
        ('{"args":[{"$cq":"uuid"}],"kwargs":{}}', "not a valid tagged value"),
        ('{"args":[{"$cq":["datetime"],"v":1}],"kwargs":{}}', "not a valid tagged value"),
        ('{"args":[{"$cq":"dict","v":[1]}],"kwargs":{}}', "has no object under 'v'"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_corrupt_parameters_raise_params_error_saying_why(text: str, message: str) -> None:
    with pytest.raises(JobParamsError, match=message):
        decode_params(text)


json_ish = st.one_of(
    st.text(max_size=40),
    st.text(alphabet='{}[]":,$cqv0123.-e ', max_size=60),
    values.map(lambda v: encode_params((v,), {})).flatmap(
        lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])
    ),
)


@given(json_ish)
def test_any_text_either_decodes_or_raises_params_error(text: str) -> None:
    # Never a KeyError, TypeError or RecursionError: corrupt rows fail with the library's error.
    with contextlib.suppress(JobParamsError):
        decode_params(text)


def test_dates_and_times_decode_to_their_own_types() -> None:
    decoded = decode_value(encode_value([date(2024, 2, 29), time(23, 59, 59, 999999)]))
    assert decoded == [date(2024, 2, 29), time(23, 59, 59, 999999)]
    assert type(decoded[0]) is date
