"""Typed job arguments (corequeue.core.typed): checked against annotations, converted only
where nothing is lost, refused with the parameter and both types named."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from corequeue.core.errors import JobParamsError
from corequeue.core.typed import bind_and_convert


class Color(enum.Enum):
    RED = "red"


@dataclass
class Line:
    sku: str
    qty: int
    price: Decimal


def f(
    order_id: int,
    amount: Decimal,
    when: datetime | None = None,
    day: date | None = None,
    at: time | None = None,
    wait: timedelta | None = None,
    ref: UUID | None = None,
    color: Color | None = None,
    ratio: float = 1.0,
    tags: list[str] | None = None,
    pair: tuple[int, str] | None = None,
    lines: list[Line] | None = None,
    prices: dict[str, Decimal] | None = None,
    anything: Any = None,
    untyped=None,  # type: ignore[no-untyped-def]
) -> None: ...


def conv(*args: Any, **kwargs: Any) -> dict[str, Any]:
    a, kw = bind_and_convert(f, args, kwargs, job="f")
    names = list(f.__annotations__)
    return {**dict(zip(names, a, strict=False)), **kw}


def test_lossless_conversions() -> None:
    out = conv(
        3,
        "7.00",
        when="2026-01-02T03:04:05+00:00",
        day="2026-01-02",
        at="03:04",
        wait=90,
        ref="12345678-1234-5678-1234-567812345678",
        color="red",
        ratio=2,
        pair=[1, "a"],
        lines=[{"sku": "x", "qty": 2, "price": "1.50"}],
        prices={"x": "1.5"},
    )
    assert out["amount"] == Decimal("7.00") and isinstance(out["amount"], Decimal)
    assert out["when"] == datetime.fromisoformat("2026-01-02T03:04:05+00:00")
    assert out["day"] == date(2026, 1, 2)
    assert out["at"] == time(3, 4)
    assert out["wait"] == timedelta(seconds=90)
    assert out["ref"] == UUID("12345678-1234-5678-1234-567812345678")
    assert out["color"] is Color.RED
    assert out["ratio"] == 2.0 and isinstance(out["ratio"], float)
    assert out["pair"] == (1, "a")
    assert out["lines"] == [Line("x", 2, Decimal("1.50"))]
    assert out["prices"] == {"x": Decimal("1.5")}


def test_values_that_match_pass_unchanged() -> None:
    out = conv(3, Decimal("1"), anything=object, untyped={1, 2})
    assert out["order_id"] == 3 and out["untyped"] == {1, 2}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"order_id": "3", "amount": "1"}, ["'order_id'", "int", "str"]),
        ({"order_id": True, "amount": "1"}, ["'order_id'", "int", "bool"]),
        ({"order_id": 3, "amount": "seven"}, ["'amount'", "Decimal", "str"]),
        ({"order_id": 3, "amount": 1.5}, ["'amount'", "Decimal", "float"]),
        ({"order_id": 3, "amount": "1", "day": datetime(2026, 1, 1)}, ["'day'", "datetime"]),
        ({"order_id": 3, "amount": "1", "tags": ["a", 2]}, ["'tags'", "[1]", "int"]),
        ({"order_id": 3, "amount": "1", "color": "blue"}, ["'color'", "Color", "str"]),
        (
            {"order_id": 3, "amount": "1", "lines": [{"sku": "x", "qty": "2", "price": "1"}]},
            ["'lines'", "[0].qty"],
        ),
    ],
)
def test_mismatches_name_the_parameter_and_both_types(
    kwargs: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(JobParamsError) as info:
        conv(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_arguments_that_do_not_fit_the_signature_are_refused() -> None:
    with pytest.raises(JobParamsError, match=r"f: .*argument"):
        bind_and_convert(f, (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), {}, job="f")


def test_an_init_skips_self() -> None:
    class C:
        def __init__(self, n: int) -> None: ...

    assert bind_and_convert(C.__init__, (1,), {}, job="C", skip_first=True) == ((1,), {})
    with pytest.raises(JobParamsError, match="'n' expects int, got str"):
        bind_and_convert(C.__init__, ("1",), {}, job="C", skip_first=True)
