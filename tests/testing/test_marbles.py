"""rxstore.testing: marble diagrams (bad ones raise a clear error naming the diagram; none is
silently accepted), the frame builders, and the VirtualLink a root runs on without a socket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from reactivex.notification import OnCompleted, OnError, OnNext

from rxstore import EventKind, RootStore, SyncState, TableStore
from rxstore.protocol.errors import NotConnected, TransportError
from rxstore.protocol.events import BATCH, SNAPSHOT, Op, Snapshot, parse_change
from rxstore.testing import (
    Frame,
    MarbleTest,
    VirtualLink,
    batch_frame,
    change,
    change_frame,
    marbles,
    message_frame,
    snapshot,
    snapshot_frame,
)


def every_parser(m: MarbleTest) -> dict[str, Callable[[str], Any]]:
    """Each helper that reads a diagram: parse, hot, cold, expected."""
    return {"parse": m.parse, "hot": m.hot, "cold": m.cold, "expected": m.expected}


@pytest.mark.parametrize(
    ("diagram", "says"),
    [
        ("-(a(b))-", "nested group"),
        ("-a)-", "')' without '('"),
        ("-(ab-", "unclosed group"),
        ("(", "unclosed group"),
        ("-a|b", "'b' after '|'"),
        ("-a#-b", "'b' after '#'"),
        ("-a||", "'|' after '|'"),
        ("-#|", "'|' after '#'"),
        ("(a|b)", "'b' after '|'"),
        ("a| b", "'b' after '|'"),  # a space takes no time: still after the end
    ],
)
@pytest.mark.parametrize("helper", ["parse", "hot", "cold", "expected"])
def test_a_malformed_diagram_raises_value_error_naming_it(diagram: str, says: str, helper: str) -> None:
    with marbles() as m, pytest.raises(ValueError) as bad:
        every_parser(m)[helper](diagram)
    assert says in str(bad.value) and repr(diagram) in str(bad.value)


@pytest.mark.parametrize("diagram", ["a|", "-a-|--", "(a|)", "(ab)#", "-#  --", "|", "#", "a|()"])
def test_time_may_pass_after_the_end_and_a_group_may_end_the_stream(diagram: str) -> None:
    with marbles() as m:
        records = m.parse(diagram)
    assert isinstance(records[-1].value, OnCompleted | OnError)


def test_a_well_formed_diagram_parses_to_its_notifications() -> None:
    """The checks reject only bad diagrams: values, a group and the end land at their ticks."""
    with marbles(timespan=10) as m:
        records = m.parse("-a-(bc) |", {"a": 1})
    assert [(r.time, r.value) for r in records] == [
        (10, OnNext(1)),
        (30, OnNext("b")),
        (30, OnNext("c")),
        (40, OnCompleted()),
    ]


@pytest.mark.parametrize(
    ("link", "says"),
    [
        ("-c-z", "unknown link symbol 'z'"),
        ("-c|", "unknown link symbol '|'"),
        ("-c#", "unknown link symbol '#'"),
        ("-(cx", "unclosed group"),
    ],
)
def test_a_bad_link_diagram_is_refused(link: str, says: str) -> None:
    with marbles() as m, pytest.raises(ValueError) as bad:
        m.root([], link=link)
    assert says in str(bad.value)


def test_a_server_diagram_that_ends_is_refused() -> None:
    frame = change_frame("posts", 1, "INSERT", {"id": "p1"})
    with marbles() as m, pytest.raises(ValueError) as bad:
        m.root([], server="-a-|", values={"a": frame})
    assert "never ends" in str(bad.value) and "'-a-|'" in str(bad.value)


def test_a_server_diagram_value_that_is_not_a_frame_is_refused() -> None:
    """A letter missing from ``values`` would be sent as the letter itself: refused, not sent."""
    frame = change_frame("posts", 1, "INSERT", {"id": "p1"})
    with marbles() as m, pytest.raises(TypeError) as bad:
        m.root([], server="-a-b", values={"a": frame})
    assert "must be Frame objects, got 'b'" in str(bad.value)


# -- frame builders -------------------------------------------------------------------------------


def test_change_frame_is_a_valid_envelope_under_the_topics_event_name() -> None:
    frame = change_frame("categories", 4, "UPDATE", {"id": "c1"}, old={"id": "c0"}, ts=1.5)
    assert frame.name == "category_update" and frame.seq == 4
    assert parse_change(frame.data).to_payload() == frame.data
    assert change_frame("posts", 1, "INSERT", {"id": "p"}, event="custom").name == "custom"


def test_a_delete_frame_given_the_row_as_record_carries_it_as_old() -> None:
    frame = change_frame("posts", 2, Op.DELETE, {"id": "p1"})
    assert (frame.data["record"], frame.data["old"]) == (None, {"id": "p1"})


def test_only_a_change_frame_has_a_seq() -> None:
    assert message_frame("post_liked", {"seq": 3}).seq is None
    assert Frame("post_update", {"op": "INSERT", "seq": "3"}).seq is None
    assert batch_frame([change_frame("posts", 1, "INSERT", {"id": "p"})]).seq is None


def test_change_is_the_event_a_root_hands_a_store_for_that_frame() -> None:
    event = change("posts", 3, "INSERT", {"id": "p1"})
    frame = change_frame("posts", 3, "INSERT", {"id": "p1"})
    assert (event.name, event.data, event.kind, event.seq) == (frame.name, frame.data, EventKind.CHANGE, 3)
    assert event.change == parse_change(frame.data)


def test_snapshot_frame_and_snapshot_carry_the_same_rows_at_the_same_seq() -> None:
    frame = snapshot_frame("posts", 9, [{"id": "p1"}, {"id": "p2"}])
    assert frame.name == SNAPSHOT
    assert frame.data == {
        "topic": "posts",
        "event": "post_update",
        "seq": 9,
        "records": [{"id": "p1"}, {"id": "p2"}],
    }
    event = snapshot("posts", 9, [{"id": "p1"}, {"id": "p2"}])
    assert (event.kind, event.seq, event.data) == (
        EventKind.SNAPSHOT,
        9,
        Snapshot("posts", 9, ({"id": "p1"}, {"id": "p2"})),
    )


def test_batch_frame_carries_name_and_payload_of_each_frame_in_order() -> None:
    frames = [change_frame("posts", 1, "INSERT", {"id": "a"}), message_frame("post_liked", {"id": "a"})]
    assert batch_frame(frames) == Frame(BATCH, {"events": [[f.name, f.data] for f in frames]})


# -- VirtualLink ----------------------------------------------------------------------------------


@attrs.frozen
class Post:
    id: str


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


def linked() -> tuple[RootStore, VirtualLink, PostStore, list[str]]:
    """A root and its store on a VirtualLink (not yet accepted), and the event names it sees."""
    link = VirtualLink()
    posts = PostStore()
    root = RootStore("virtual://gateway", stores=[posts], transport=link)
    link.root = root
    root.setup_domain_event_handlers()
    names: list[str] = []
    root.events.subscribe(lambda event: names.append(event.name))
    return root, link, posts, names


def test_the_link_replays_missed_changes_as_one_batch_then_sends_live_and_loses_messages() -> None:
    root, link, posts, names = linked()
    link.accept()
    link.send(change_frame("posts", 1, "INSERT", {"id": "p1"}))
    link.drop()
    link.send(change_frame("posts", 2, "INSERT", {"id": "p2"}))
    link.send(message_frame("post_liked", {"id": "p1"}))  # a broadcast while down: lost
    link.send(change_frame("posts", 3, "INSERT", {"id": "p3"}))
    replayed: list[int] = []
    posts.state.subscribe(lambda state: replayed.append(len(state)))
    link.accept()
    assert sorted(posts.value) == ["p1", "p2", "p3"] and root.cursor == 3
    assert replayed == [1, 3], "the two missed changes came in one frame"
    assert "post_liked" not in names


def test_a_link_with_another_epoch_resets_the_root_and_sends_every_change_again() -> None:
    root, link, posts, names = linked()
    states: list[list[str]] = []
    posts.state.subscribe(lambda state: states.append(sorted(state)))
    link.accept()
    link.send(change_frame("posts", 1, "INSERT", {"id": "p1"}))
    link.drop()
    link.epoch = "restored"  # the gateway's database was restored from a backup
    link.accept()
    assert names == ["post_update", "rxstore:reset", "post_update"]
    assert states == [[], ["p1"], [], ["p1"]], "emptied by the reset, then the change again"
    assert root.epoch == "restored" and root.cursor == 1


async def test_the_link_records_what_the_root_emits_and_refuses_it_while_down() -> None:
    _root, link, _posts, _names = linked()
    link.accept()
    assert await link.call("rxstore:mutate", {"id": "m1"}, timeout=1) == {"ok": True}
    assert link.sent == [Frame("rxstore:mutate", {"id": "m1"})]
    link.drop()
    with pytest.raises(NotConnected):
        await link.emit("rxstore:broadcast", {})


async def test_an_unreachable_link_fails_connect_with_a_transport_error() -> None:
    _root, link, _posts, _names = linked()
    link.unreachable()
    with pytest.raises(TransportError, match="unreachable"):
        await link.connect("virtual://gateway", {})
    assert not link.up


def test_a_store_is_live_once_the_link_has_replayed_what_it_missed() -> None:
    _root, link, posts, _names = linked()
    link.send(change_frame("posts", 1, "INSERT", {"id": "p1"}))  # before the first connect
    assert posts.sync.state is not SyncState.LIVE
    link.accept()
    assert posts.sync.state is SyncState.LIVE and sorted(posts.value) == ["p1"]
    link.drop()
    assert posts.sync.state is SyncState.STALE


async def test_a_virtual_root_goes_live_inside_a_running_event_loop() -> None:
    """Marbles in an ``async def`` test (a loop running, virtual time) go live as without one:
    the virtual link computes the auth payload, so no store is left to a task that never runs."""
    from reactivex import operators as ops

    from rxstore import TableStore
    from rxstore.testing import change_frame, marbles, snapshot_frame

    class Posts(TableStore[dict]):  # type: ignore[type-arg]
        table = "posts"

    with marbles() as m:
        posts = Posts()
        m.root(
            [posts],
            server="s1",
            link="c--x--c",
            values={
                "s": snapshot_frame("posts", 0, []),
                "1": change_frame("posts", 1, "INSERT", {"id": "p1"}),
            },
        )
        syncs = m.record(posts.status.pipe(ops.map(lambda s: str(s.state.value))))  # type: ignore[attr-defined]
        m.run()
    assert [getattr(r.value, "value", None) for r in syncs].count("live") == 2, syncs
