"""corequeue.core.shares: how a worker with queue shares (``--queue flood=1 --queue other``)
sizes its claims and which child a capped queue's job may go to. Pure and fast."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corequeue.core import shares
from corequeue.core.shares import Group, Room


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("mail", ("mail", None)), ("mail=2", ("mail", 2)), (" mail = 10 ", ("mail", 10))],
)
def test_a_queue_is_written_name_or_name_equals_children(
    spec: str, parsed: tuple[str, int | None]
) -> None:
    assert shares.parse(spec) == parsed
    assert shares.written(*parsed) == spec.replace(" ", "")


@pytest.mark.parametrize("spec", ["", "=2", "mail=", "mail=0", "mail=-1", "mail=x", "mail=1.5"])
def test_a_share_that_is_not_a_whole_number_of_children_is_refused(spec: str) -> None:
    with pytest.raises(shares.ShareError):
        shares.parse(spec)


def test_split_gives_the_names_in_order_and_the_caps() -> None:
    assert shares.split(["mail=2", "default"]) == (("mail", "default"), {"mail": 2})
    with pytest.raises(shares.ShareError, match="named twice"):
        shares.split(["mail=2", "mail"])


def test_a_capped_queue_goes_to_its_holders_or_to_any_child_while_it_has_too_few() -> None:
    assert shares.may_take(1, 0, holds=False)  # nobody holds it: any child
    assert not shares.may_take(1, 1, holds=False)  # one child holds it: only that one
    assert shares.may_take(1, 1, holds=True)
    assert shares.may_take(2, 1, holds=False)


def test_a_capped_queue_has_the_room_of_its_holders_and_of_the_roomiest_others() -> None:
    rooms = [Room(3, frozenset({"flood"})), Room(5), Room(4), Room(0, frozenset({"mail"}))]
    assert shares.room_for("flood", 1, rooms) == 3  # its one child is chosen
    assert shares.room_for("flood", 2, rooms) == 3 + 5  # and the roomiest other one
    assert shares.room_for("mail", 1, rooms) == 0  # its child is full: nothing to claim
    assert shares.room_for("new", 2, rooms) == 5 + 4


def test_the_plan_claims_each_capped_queue_for_its_room_then_the_rest_for_everything() -> None:
    rooms = [Room(2, frozenset({"flood"})), Room(2), Room(2)]
    plan = shares.claim_plan(["flood", "other"], {"flood": 1}, rooms, free=6)
    assert plan == [Group(("flood",), 2), Group(("other",), 6)]
    # What the capped queue did not take is the others' (a share is not a reservation).
    assert shares.next_limit(plan[1], 6, claimed=0) == 6
    assert shares.next_limit(plan[1], 6, claimed=2) == 4
    assert shares.claimable(plan, 6) == 6


def test_a_capped_queue_whose_children_are_full_is_not_claimed() -> None:
    rooms = [Room(0, frozenset({"flood"})), Room(2), Room(2)]
    plan = shares.claim_plan(["flood", "other"], {"flood": 1}, rooms, free=4)
    assert plan == [Group(("other",), 4)]
    only_flood = shares.claim_plan(["flood"], {"flood": 1}, rooms, free=4)
    assert only_flood == [] and shares.claimable(only_flood, 4) == 0


def test_uncapped_queues_are_claimed_together_in_one_group() -> None:
    plan = shares.claim_plan(["a", "mail", "b"], {"mail": 2}, [Room(1), Room(1)], free=2)
    assert plan == [Group(("mail",), 2), Group(("a", "b"), 2)]


_rooms = st.lists(
    st.builds(
        Room,
        st.integers(0, 6),
        st.frozensets(st.sampled_from(["q0", "q1", "q2"]), max_size=2),
    ),
    min_size=1,
    max_size=5,
)


@given(
    rooms=_rooms,
    caps=st.dictionaries(st.sampled_from(["q0", "q1", "q2"]), st.integers(1, 5)),
    uncapped=st.booleans(),
    found=st.lists(st.integers(0, 50), min_size=4, max_size=4),
)
def test_claims_never_exceed_the_free_slots_nor_a_capped_queues_room(
    rooms: list[Room], caps: dict[str, int], uncapped: bool, found: list[int]
) -> None:
    """Whatever each claim finds (``found``: ready jobs per group), the plan's claims together
    take at most the free slots, and a capped queue at most what its children can take."""
    free = sum(r.free for r in rooms)
    queues = ["q0", "q1", "q2"] + (["other"] if uncapped else [])
    plan = shares.claim_plan(queues, caps, rooms, free)
    claimed = 0
    for group, ready in zip(plan, found, strict=False):
        got = min(ready, shares.next_limit(group, free, claimed))
        if len(group.queues) == 1 and group.queues[0] in caps:
            assert got <= shares.room_for(group.queues[0], caps[group.queues[0]], rooms)
        claimed += got
    assert claimed <= free
    assert shares.claimable(plan, free) <= free
    if uncapped and free:  # the uncapped queues can always fill what the others left
        assert plan[-1] == Group(tuple(q for q in queues if q not in caps), free)


def test_a_share_fits_between_one_child_and_all_of_them_and_a_misfit_gets_the_nearest() -> None:
    assert [shares.fits(k, 2) for k in (0, 1, 2, 3)] == [False, True, True, False]
    assert [shares.nearest(k, 2) for k in (0, 1, 2, 5)] == [1, 1, 2, 2]
