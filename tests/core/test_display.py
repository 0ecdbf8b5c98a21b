"""Parameters as the dashboard shows them, and the text a search by value looks for."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from corequeue.core.display import named_params, search_patterns, search_term, show
from corequeue.core.params import Codec, encode_params

ORM = Codec(
    "orm",
    lambda o: isinstance(o, Order),
    lambda o: {"model": "shop.models.Order", "pk": [o.pk]},
    lambda v: Order(v["pk"][0]),
)


class Order:
    def __init__(self, pk: int) -> None:
        self.pk = pk


def test_parameters_are_named_and_decoded() -> None:
    text = encode_params(
        [7, Order(12)],
        {
            "when": datetime(2026, 5, 1, 12, tzinfo=UTC),
            "amount": Decimal("9.50"),
            "wait": timedelta(minutes=5),
            "ref": UUID(int=1),
            "pair": (1, "a"),
        },
        codecs=[ORM],
    )
    assert named_params(text, ["user_id", "order"]) == [
        ("user_id", "7"),
        ("order", "Order#12"),
        ("when", "2026-05-01T12:00:00+00:00"),
        ("amount", "9.50"),
        ("wait", "0:05:00"),
        ("ref", "00000000-0000-0000-0000-000000000001"),
        ("pair", "(1, 'a')"),
    ]
    # Without the class, positional arguments are numbered.
    assert named_params(text)[:2] == [("args[0]", "7"), ("args[1]", "Order#12")]  # type: ignore[index]


def test_odd_stored_text_is_shown_as_it_is() -> None:
    assert named_params("not json") is None
    assert named_params('{"args": 1, "kwargs": {}}') is None
    assert named_params(json.dumps({"args": [], "kwargs": {"$cq": "dict", "v": {"$cq": 1}}})) == [
        ("$cq", "1")
    ]
    assert show({"$cq": "mystery", "v": [1]}) == "mystery([1])"
    assert show("x" * 500).endswith("…") and len(show("x" * 500)) == 200


def test_search_patterns_match_the_stored_text_of_jobs_holding_the_value() -> None:
    stored = encode_params([7, Order(12)], {"email": "alice@example.com"}, codecs=[ORM])
    for term in ("7", "Order#12", "alice@example.com", "alice"):
        assert any(p in stored for p in search_patterns(term)), term
    for term in ("77", "Order#1", "Invoice#12", "bob"):
        assert not any(p in stored for p in search_patterns(term)), term
    assert search_patterns("  ") == []
    assert search_term("'alice'") == "alice" and search_term("Order#12") == "Order#12"
