"""Parameters as the dashboard shows them, the text a search by value looks for, and a
person's refused action in their terms."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from corequeue.core.display import (
    missing_job,
    named_params,
    refusal,
    search_patterns,
    search_term,
    show,
)
from corequeue.core.lifecycle import PERSON_ACTIONS, Action
from corequeue.core.params import Codec, encode_params
from corequeue.core.states import UNKNOWN_STATE, JobState

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


# -- a person's refused action, in their terms (issue 20) -------------------------------------


@pytest.mark.parametrize("action", list(PERSON_ACTIONS))
def test_every_refusal_names_the_job_and_what_it_is_doing_not_the_lifecycle(
    action: Action,
) -> None:
    for state in JobState:
        if state in PERSON_ACTIONS[action]:
            continue
        text = refusal(29, action, state)
        assert text.startswith("job 29 "), text
        assert "event" not in text and "state '" not in text, text
        assert ": only " in text or "cancel it first" in text, text  # what may be done instead


def test_refusals_read_as_people_say_them() -> None:
    assert refusal(29, "cancel", JobState.CANCELLED) == (
        "job 29 is already cancelled: only waiting or running jobs can be cancelled"
    )
    assert refusal(29, "cancel", JobState.SUCCEEDED).startswith("job 29 has already succeeded")
    assert "enqueue it again instead" in refusal(3, "retry", JobState.SUCCEEDED)
    assert refusal(3, "retry", JobState.RUNNING) == (
        "job 3 is running: only failed or cancelled jobs can be retried "
        "(wait for it to end, or cancel it first)"
    )
    assert refusal(7, "delete", JobState.RUNNING) == (
        "job 7 is running: cancel it first, then delete it"
    )
    assert refusal(5, "retry", None) == missing_job(5)
    assert missing_job(5).startswith("no job with id 5: it was deleted or pruned")
    assert "does not know ('unknown')" in refusal(8, "delete", UNKNOWN_STATE)
