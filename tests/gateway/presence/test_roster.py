"""Roster: members by channel and node; a node's members replaced or dropped, with what that changed."""

from __future__ import annotations

from rxstore.gateway.presence.roster import Roster
from rxstore.protocol.presence import Member

ANN, BOB, CARL = Member("ann", "a"), Member("bob", "b"), Member("carl", "c")


def test_a_channel_holds_every_nodes_members_and_a_node_takes_only_its_own_away() -> None:
    roster = Roster()
    roster.put("n1", "room", ANN)
    roster.put("n2", "room", BOB)
    roster.put("n2", "hall", CARL)
    assert roster.count("room") == 2 and roster.size() == 3 and roster.size("n2") == 2
    diffs = roster.drop_node("n2")
    assert diffs["room"].leaves == (BOB,) and diffs["hall"].leaves == (CARL,)
    assert roster.members("room") == [ANN] and roster.channels == 1 and roster.nodes() == ["n1"]


def test_a_nodes_whole_state_replaces_what_it_held_with_joins_updates_and_leaves() -> None:
    roster = Roster()
    roster.put("n2", "room", ANN)
    roster.put("n2", "room", BOB)
    diffs = roster.replace_node("n2", {"room": [Member("ann", "a", {"away": True}), CARL]})
    assert diffs["room"].joins == (CARL,) and diffs["room"].leaves == (BOB,)
    assert diffs["room"].updates == (Member("ann", "a", {"away": True}),)
    assert roster.replace_node("n2", roster.of_node("n2")) == {}  # the same state: nothing changed


def test_the_same_metadata_again_changes_nothing_and_removing_a_stranger_neither() -> None:
    roster = Roster()
    roster.put("n1", "room", ANN)
    assert not roster.put("n1", "room", ANN)
    assert not roster.remove("n1", "room", ("bob", "b")) and not roster.remove("n9", "room", ANN.key)
