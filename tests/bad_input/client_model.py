"""A client under test (RootStore on a VirtualLink) and a plain-dict model of what it must do.

Every frame the properties throw is an *item* that knows its wire form and what
it must do to the model: which errors it must raise on ``root.errors`` (exactly
those, each naming what is wrong), which events reach the hot stream, and how
the tables, the cursor and the likes counter change. The decisions per kind of
bad input are written down in :data:`DECISIONS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import msgpack
from hypothesis import strategies as st

from rxstore import DomainStore, Event, EventKind, ProtocolError, RootStore, StoreError, TableStore
from rxstore.client.transport import _JSONPacket, _msgpack_packet
from rxstore.protocol.events import BATCH, CLOSING, LIVE, RESET, SNAPSHOT, topic_event_name
from rxstore.testing import VirtualLink
from tests.bad_input.strategies import (
    big_ints,
    json_values,
    message_data,
    non_dicts,
    not_envelope,
    not_int,
    not_str,
    texts,
)

DECISIONS = {
    "change envelope with a bad seq/topic/op/record/old/ts/mutation": "one ProtocolError naming the field",
    "change envelope with extra keys, or without ts": "valid (extra keys ignored, ts defaults to 0)",
    "valid envelope whose row has no primary key / an unhashable one": "cursor advances, one StoreError",
    "row that does not fit record_type": "cursor advances, one StoreError naming the field",
    "change with seq < cursor, or = cursor under the same name (duplicate / out of order)": (
        "valid no-op, counted in metrics.duplicates"
    ),
    "message under any other name, any payload": "valid: on the hot stream, to the stores accepting it",
    "reducer raising on a message": "one StoreError naming the store and the event; state kept",
    "snapshot frame of the wrong shape": "one ProtocolError naming the field",
    "snapshot row without primary key": "one StoreError per row; the other rows are kept",
    "batch frame of the wrong shape": "one ProtocolError",
    "batch entry that is not [name, payload]": "one ProtocolError per entry; the others are applied",
    "rxstore:reset with any payload": "valid: cursor and tables cleared; on the hot stream",
    "rxstore:live with any payload": "valid no-op (sync status only)",
    "rxstore:closing with any payload": "valid: its reason kept (router.closing), not on the hot stream",
    "unknown rxstore:* control frame": "valid: on the hot stream, no store accepts it",
}
"""What the client must do with each kind of bad input (asserted by the properties)."""

TOPICS = ("posts", "comments", "tags")  # tags: a topic no store follows
EVENTS = {topic: topic_event_name(topic) for topic in TOPICS}
ROUTED = frozenset({EVENTS["posts"], EVENTS["comments"], "post_liked"})
CONTROL = frozenset({BATCH, SNAPSHOT, RESET, LIVE, CLOSING})


# -- the client ----------------------------------------------------------------


class Posts(TableStore[dict[str, Any]]):
    """Rows kept as dicts: any JSON goes."""

    table = "posts"


@attrs.frozen
class Comment:
    id: str
    body: str
    votes: int = 0


class Comments(TableStore[Comment]):
    """Rows structured with cattrs: rows that do not fit are reported."""

    table = "comments"
    record_type = Comment


class Likes(DomainStore[int]):
    """Counts ``post_liked`` messages; its reducer raises on a payload without ``post``."""

    accepts = ("post_liked",)
    initial = 0

    def reduce(self, state: int, event: Event) -> int:
        if event.kind is not EventKind.MESSAGE:
            return state  # resets are not likes
        data = event.data
        if not isinstance(data, dict) or "post" not in data:
            raise ValueError(f"a like needs an object with 'post', got {type(data).__name__}")
        return state + 1


class Recorder:
    """A plain RealtimeStore: records the name of every event on the hot stream."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def setup_realtime_handlers(self, events: Any) -> Any:
        return events.subscribe(lambda event: self.names.append(event.name))


@attrs.define
class Client:
    root: RootStore
    link: VirtualLink
    posts: Posts
    comments: Comments
    likes: Likes
    recorder: Recorder
    errors: list[Exception]
    emissions: list[str]
    wire: str | None = None
    """``"json"`` or ``"msgpack"``: frames go through that serializer and the transport's decoder first."""

    def send(self, name: Any, data: Any) -> list[Exception]:
        """Feed one frame through the transport callback; return the errors it reported."""
        before = len(self.errors)
        if self.wire is not None:
            name, data = through_wire(self.wire, name, data)
        self.root.router.on_frame(name, data)
        return self.errors[before:]


def through_wire(serializer: str, name: Any, data: Any) -> tuple[Any, Any]:
    """``(name, data)`` encoded as a Socket.IO event and decoded by ``SocketIOTransport``'s packet class.

    A frame the serializer would change (a tuple, a NaN, an int key, an int
    beyond 64 bits for msgpack) is returned as it is.
    """
    try:
        if serializer == "json":
            text = json.dumps([name, data])
            if json.loads(text) != [name, data]:
                return name, data
            decoded = _JSONPacket(encoded_packet="2" + text).data
        else:
            packed = msgpack.packb({"type": 2, "data": [name, data], "nsp": "/"})
            if msgpack.unpackb(packed, strict_map_key=False)["data"] != [name, data]:
                return name, data
            decoded = _msgpack_packet()(encoded_packet=packed).data
    except (TypeError, ValueError, OverflowError):
        return name, data
    return decoded[0], decoded[1]


def new_client(wire: str | None = None) -> Client:
    """A connected root store (virtual link) with two tables, a domain store and a recorder."""
    posts, comments, likes, recorder = Posts(), Comments(), Likes(), Recorder()
    link = VirtualLink()
    root = RootStore("virtual://gateway", stores=[posts, comments, likes, recorder], transport=link)
    link.root = root
    root.setup_domain_event_handlers()
    link.accept()
    errors: list[Exception] = []
    root.errors.subscribe(errors.append)
    emissions: list[str] = []

    def emitted(name: str) -> Callable[[Any], None]:
        return lambda _state: emissions.append(name)

    for store in (posts, comments, likes):
        store.state.subscribe(emitted(store.name))
    emissions.clear()  # the BehaviorSubjects' current values
    return Client(root, link, posts, comments, likes, recorder, errors, emissions, wire)


# -- the model -----------------------------------------------------------------


@attrs.frozen
class Expected:
    """An error that must be reported: its class and words its message must contain.

    A word ``"a|b"`` is satisfied by either alternative.
    """

    kind: type[Exception]
    words: tuple[str, ...]

    def matches(self, error: Exception) -> bool:
        message = str(error)
        return isinstance(error, self.kind) and all(
            any(alternative in message for alternative in word.split("|")) for word in self.words
        )


@attrs.define
class Model:
    cursor: int | None = None
    cursor_event: str | None = None
    """The event name the cursor's change (or first snapshot) came under: the same seq under
    another name is another subscription's copy of the change, not a duplicate."""
    rows: dict[str, dict[Any, Any]] = attrs.field(factory=lambda: {"posts": {}, "comments": {}})
    seqs: dict[str, int | None] = attrs.field(factory=lambda: {"posts": None, "comments": None})
    likes: int = 0
    duplicates: int = 0
    hot: list[str] = attrs.field(factory=list)

    def key(self) -> tuple[Any, ...]:
        return (repr(self.rows), repr(self.seqs), self.likes)


STORE_OF = {"posts": "Posts", "comments": "Comments"}


def _row_problem(topic: str, row: Any, *, delete: bool = False) -> Expected | None:
    """The StoreError a row must raise in its store, if any.

    Rows with an unhashable key are only drawn for INSERT and UPDATE: a DELETE of
    one is not reported on an empty table (pinned by ``test_client_bugs``).
    """
    store = STORE_OF[topic]
    if "id" not in row:
        return Expected(StoreError, (store, "id"))  # "'id'" or, for a typed snapshot row, "$.id"
    try:
        hash(row["id"])
    except TypeError:
        # a typed store may reject the id's type first ("expected str @ $.id")
        return Expected(StoreError, (store, "unhashable" if topic == "posts" else "unhashable|$.id"))
    if delete:
        return None
    if topic == "comments":
        if "body" not in row:
            return Expected(StoreError, (store, "body"))
        if type(row.get("votes", 0)) is not int:
            return Expected(StoreError, (store, "votes"))
    return None


def _record(topic: str, row: dict[str, Any]) -> Any:
    if topic == "comments":
        return Comment(row["id"], row["body"], row.get("votes", 0))
    return row


# -- items: one frame (or one batch entry) and its effect on the model ---------------


class Item:
    """One frame, or one entry of a batch frame."""

    def wire(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def entry(self) -> Any:
        """The item as a batch entry."""
        return list(self.wire())

    def apply(self, model: Model, errors: list[Expected]) -> None:
        raise NotImplementedError


@attrs.define
class ChangeItem(Item):
    """A well-formed change envelope (its row may still not fit the store)."""

    topic: str
    payload: dict[str, Any]
    name: str

    def wire(self) -> tuple[Any, Any]:
        return self.name, self.payload

    def apply(self, model: Model, errors: list[Expected]) -> None:
        seq = self.payload["seq"]
        cursor = model.cursor
        if cursor is not None and (seq < cursor or (seq == cursor and self.name == model.cursor_event)):
            model.duplicates += 1
            return
        model.cursor, model.cursor_event = seq, self.name
        model.hot.append(self.name)
        if self.topic not in model.rows:
            return  # nobody follows this topic
        table_seq = model.seqs[self.topic]
        if table_seq is not None and seq <= table_seq:
            return  # the table has it: its snapshot (at a later seq than the cursor) or change holds it
        op = self.payload["op"]
        row = self.payload["record"] if op != "DELETE" else self.payload["old"]
        problem = _row_problem(self.topic, row, delete=op == "DELETE")
        if problem is not None:
            errors.append(problem)
            return
        if op == "DELETE":
            model.rows[self.topic].pop(row["id"], None)
        else:
            model.rows[self.topic][row["id"]] = _record(self.topic, row)
        model.seqs[self.topic] = seq


@attrs.define
class Rejected(Item):
    """Any frame or entry the client must reject with exactly one error."""

    name: Any
    data: Any
    expected: Expected
    raw_entry: Any = None
    is_raw: bool = False

    def wire(self) -> tuple[Any, Any]:
        return self.name, self.data

    def entry(self) -> Any:
        return self.raw_entry if self.is_raw else [self.name, self.data]

    def apply(self, model: Model, errors: list[Expected]) -> None:
        errors.append(self.expected)


@attrs.define
class MessageItem(Item):
    name: str
    data: Any

    def wire(self) -> tuple[Any, Any]:
        return self.name, self.data

    def apply(self, model: Model, errors: list[Expected]) -> None:
        model.hot.append(self.name)
        if self.name == "post_liked":
            if isinstance(self.data, dict) and "post" in self.data:
                model.likes += 1
            else:
                errors.append(Expected(StoreError, ("Likes", "'post_liked'")))


@attrs.define
class SnapshotItem(Item):
    topic: str
    seq: int
    records: list[dict[str, Any]]

    def wire(self) -> tuple[Any, Any]:
        return SNAPSHOT, {
            "topic": self.topic,
            "event": EVENTS[self.topic],
            "seq": self.seq,
            "records": self.records,
        }

    def apply(self, model: Model, errors: list[Expected]) -> None:
        if model.cursor is None:  # a snapshot moves only an unset cursor (first sync, after a reset)
            model.cursor, model.cursor_event = self.seq, EVENTS[self.topic]
        model.hot.append(EVENTS[self.topic])
        if self.topic not in model.rows:
            return
        rows: dict[Any, Any] = {}
        for row in self.records:
            problem = _row_problem(self.topic, row)
            if problem is not None:
                errors.append(problem)
            else:
                rows[row["id"]] = _record(self.topic, row)
        model.rows[self.topic] = rows
        model.seqs[self.topic] = self.seq


@attrs.define
class ControlItem(Item):
    """rxstore:reset / rxstore:live / an unknown rxstore:* frame, with any payload."""

    name: str
    data: Any

    def wire(self) -> tuple[Any, Any]:
        return self.name, self.data

    def apply(self, model: Model, errors: list[Expected]) -> None:
        if self.name == RESET:
            model.cursor = model.cursor_event = None
            model.rows = {topic: {} for topic in model.rows}
            model.seqs = dict.fromkeys(model.seqs)
            model.hot.append(self.name)  # resets are on the hot stream too
        elif self.name not in (LIVE, CLOSING):
            model.hot.append(self.name)


@attrs.define
class BatchItem(Item):
    entries: list[Item]

    def wire(self) -> tuple[Any, Any]:
        return BATCH, {"events": [entry.entry() for entry in self.entries]}

    def apply(self, model: Model, errors: list[Expected]) -> None:
        for entry in self.entries:
            entry.apply(model, errors)


# -- generating items ------------------------------------------------------------
# Strategies are built once, here: building them per draw costs more than drawing.

_ENVELOPE = frozenset({"seq", "topic", "op", "record", "old", "ts", "mutation", "out"})
_INDEX = st.integers(0, 2**16)
_FRESH_GAP = st.sampled_from([0, 0, 0, 1, 2, 7])
_SEQ_KIND = st.sampled_from(["fresh"] * 6 + ["duplicate", "straggler", "jump"])
_JUMP = st.sampled_from([1000, 2**53, 2**63, 10**30])
_KNOWN_OR_NEW = st.sampled_from(["known", "known", "new"])
_POST_KEY = st.one_of(texts, st.integers(-5, 50), big_ints)
_NOT_ID = texts.filter(lambda k: k != "id")
_EXTRA_FIELDS = st.dictionaries(_NOT_ID, json_values, max_size=3)
_ROW_PROBLEM = {
    "posts": st.sampled_from(["no id", "unhashable id"]),
    "comments": st.sampled_from(["no id", "unhashable id", "typed"]),
    "tags": st.sampled_from(["no id", "unhashable id"]),
}
_UNHASHABLE = st.one_of(st.lists(json_values, max_size=2), st.dictionaries(texts, json_values, max_size=2))
# a numeric string like "7" is coerced by cattrs, not rejected (see test_client_bugs)
_BAD_TYPED_ROW = st.one_of(
    st.builds(lambda k: {"id": k, "votes": 1}, texts),
    st.builds(
        lambda k, v: {"id": k, "body": "b", "votes": v}, texts, st.sampled_from(["many", [], {}, None])
    ),
)
_COMMENT_VOTES = st.one_of(st.none(), big_ints)
_CHANGE_TOPIC = st.sampled_from(["posts", "posts", "comments", "tags"])
_OP = st.sampled_from(["INSERT", "UPDATE", "DELETE"])
_UPDATE_OLD = st.booleans()
_TS = st.one_of(st.just(None), st.floats(allow_nan=False, allow_infinity=False), big_ints)
_MUTATION = st.one_of(st.just(False), st.none(), texts)  # False: no mutation key
_ENVELOPE_EXTRAS = st.dictionaries(texts.filter(lambda k: k not in _ENVELOPE), json_values, max_size=2)
_BAD_FIELD = st.sampled_from(
    [
        "seq",
        "negative seq",
        "topic",
        "no topic",
        "op",
        "record",
        "old",
        "need record",
        "need old",
        "ts",
        "mutation",
        "out",
    ]
)
_NON_OBJECT = st.one_of(
    st.booleans(), big_ints, st.floats(allow_nan=False), texts, st.lists(json_values, max_size=2)
)
_BAD_OUT = st.one_of(  # not a list, or a list with a row that is not an object
    _NON_OBJECT.filter(lambda v: not isinstance(v, list)) | st.dictionaries(texts, json_values, max_size=2),
    st.lists(json_values, min_size=1, max_size=3).filter(lambda rows: any(type(r) is not dict for r in rows)),
)
_NEGATIVE = st.integers(max_value=-1) | st.just(-(10**99) + 1)
# only unhashable ops here: a hashable bad op is misreported as missing (see test_client_bugs)
_BAD_OP = st.one_of(st.lists(texts, max_size=2), st.dictionaries(texts, texts, max_size=2))
_BAD_TS = st.one_of(
    st.none(),
    st.booleans(),
    texts,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(texts, st.integers(), max_size=1),
)
_BAD_MUTATION = st.one_of(
    st.booleans(),
    big_ints,
    st.floats(allow_nan=False),
    st.lists(texts, max_size=1),
    st.dictionaries(texts, texts, max_size=1),
)
_INSERT_OR_UPDATE = st.sampled_from(["INSERT", "UPDATE"])
_MESSAGE_NAME = texts.filter(lambda n: not n.startswith("rxstore:") and n not in ROUTED)
_BAD_CHANGE_NAME = st.one_of(st.sampled_from(sorted(EVENTS.values())), _MESSAGE_NAME)
_LIKE = st.builds(
    lambda p, extra: {**extra, "post": p}, texts, st.dictionaries(texts, json_values, max_size=2)
)
_LIKE_DATA = st.one_of(_LIKE.filter(not_envelope), message_data)
_BAD_ENTRY = st.one_of(
    non_dicts.filter(lambda v: not isinstance(v, list)),
    st.dictionaries(texts, json_values, max_size=2),
    st.just([]),
    st.builds(lambda n: [n], texts),
    st.builds(lambda n, d, x: [n, d, x], texts, json_values, json_values),
    st.builds(lambda n, d: [n, d], not_str, json_values),
)
_ENTRY_KIND = st.sampled_from(["change"] * 5 + ["bad row", "bad change", "message", "bad entry"])
_TOPIC = st.sampled_from(TOPICS)
_SNAPSHOT_ROWS = st.integers(0, 6)
_ONE_IN_SIX = st.integers(0, 5)
_SNAPSHOT_FIELD = st.sampled_from(["object", "topic", "event", "seq", "records", "record"])
_NOT_LIST = non_dicts.filter(lambda v: not isinstance(v, list)) | st.dictionaries(
    texts, json_values, max_size=2
)
_BAD_SEQ = not_int | st.integers(max_value=-1)
_BAD_BATCH = st.one_of(
    non_dicts,
    st.dictionaries(texts.filter(lambda k: k != "events"), json_values, max_size=2),
    st.builds(lambda v: {"events": v}, _NOT_LIST),
)
_CONTROL_NAME = st.one_of(
    st.sampled_from([RESET, LIVE, LIVE]),
    st.builds(lambda s: "rxstore:" + s, texts).filter(lambda n: n not in CONTROL),
)
_ITEM_KIND = st.sampled_from(
    ["change"] * 8
    + ["bad row", "bad change", "bad change", "bad change", "message", "message"]
    + ["batch", "batch", "batch", "snapshot", "bad snapshot", "bad batch", "control"]
)
_BATCH_SIZE = st.integers(0, 8)


T = TypeVar("T")


class Draw(Protocol):
    """Hypothesis's ``draw`` (of ``@composite`` or ``data()``): a value of the strategy's type."""

    def __call__(self, strategy: st.SearchStrategy[T], /) -> T: ...


class Gen:
    """Draws items; keeps the seqs issued so far to draw duplicates and stragglers."""

    def __init__(self, draw: Draw) -> None:
        self.draw = draw
        self.next_seq = 1
        self.issued: list[int] = []
        self.keys: dict[str, list[Any]] = {"posts": [], "comments": [], "tags": []}

    # seqs

    def fresh(self) -> int:
        seq = self.next_seq + self.draw(_FRESH_GAP)
        self._issue(seq)
        return seq

    def change_seq(self) -> int:
        kind = self.draw(_SEQ_KIND)
        if kind == "duplicate" and self.issued:
            return self.issued[self.draw(_INDEX) % len(self.issued)]
        if kind == "straggler":
            return self.draw(_INDEX) % (self.next_seq + 1)
        if kind == "jump":
            seq = self.next_seq + self.draw(_JUMP)
            self._issue(seq)
            return seq
        return self.fresh()

    def _issue(self, seq: int) -> None:
        self.issued.append(seq)
        self.next_seq = max(self.next_seq, seq + 1)

    # rows

    def key(self, topic: str) -> Any:
        known = self.keys[topic]
        if known and self.draw(_KNOWN_OR_NEW) == "known":
            return known[self.draw(_INDEX) % len(known)]
        key = self.draw(texts if topic == "comments" else _POST_KEY)
        if key not in known:
            known.append(key)
        return key

    def row(self, topic: str, *, bad: bool = False) -> dict[str, Any]:
        draw = self.draw
        if bad:
            problem = draw(_ROW_PROBLEM[topic])
            if problem == "no id":
                return draw(_EXTRA_FIELDS)
            if problem == "unhashable id":
                return {"id": draw(_UNHASHABLE), "body": "b"}
            return draw(_BAD_TYPED_ROW)
        key = self.key(topic)
        if topic == "comments":
            row: dict[str, Any] = {"id": key, "body": draw(texts)}
            votes = draw(_COMMENT_VOTES)
            if votes is not None:
                row["votes"] = votes
            return row
        return {**draw(_EXTRA_FIELDS), "id": key}

    # items

    def change(self, *, bad_row: bool = False) -> ChangeItem:
        draw = self.draw
        topic = draw(_CHANGE_TOPIC)
        op = draw(_OP)
        row = self.row(topic, bad=bad_row)
        if op == "DELETE" and "id" in row and not isinstance(row["id"], str | int):
            op = "UPDATE"  # see _row_problem
        payload: dict[str, Any] = {"seq": self.change_seq(), "topic": topic, "op": op}
        if op == "DELETE":
            payload["record"], payload["old"] = None, row
        else:
            payload["record"] = row
            payload["old"] = row if op == "UPDATE" and draw(_UPDATE_OLD) else None
        ts = draw(_TS)
        if ts is not None:
            payload["ts"] = ts
        mutation = draw(_MUTATION)
        if mutation is not False:
            payload["mutation"] = mutation
        return ChangeItem(topic, {**draw(_ENVELOPE_EXTRAS), **payload}, EVENTS[topic])

    def bad_change(self) -> Rejected:
        """A change envelope with exactly one bad field."""
        draw = self.draw
        item = self.change()
        payload = dict(item.payload)
        field = draw(_BAD_FIELD)
        if field == "seq":
            payload["seq"], words = draw(not_int), ("'seq'",)
        elif field == "negative seq":
            payload["seq"], words = draw(_NEGATIVE), ("'seq'",)
        elif field == "topic":
            payload["topic"], words = draw(not_str), ("'topic'",)
        elif field == "no topic":
            del payload["topic"]
            words = ("'topic'",)
        elif field == "op":
            payload["op"], words = draw(_BAD_OP), ("invalid op",)
        elif field == "record":
            payload["record"], words = draw(_NON_OBJECT), ("'record'",)
        elif field == "old":
            payload["old"], words = draw(_NON_OBJECT), ("'old'",)
        elif field == "need record":
            payload["op"], payload["record"], words = draw(_INSERT_OR_UPDATE), None, ("'record'",)
        elif field == "need old":
            payload["op"], payload["record"], payload["old"], words = "DELETE", None, None, ("'old'",)
        elif field == "ts":
            payload["ts"], words = draw(_BAD_TS), ("'ts'",)
        elif field == "mutation":
            payload["mutation"], words = draw(_BAD_MUTATION), ("'mutation'",)
        else:
            payload["out"], words = draw(_BAD_OUT), ("'out'",)
        name = item.name if draw(st.booleans()) else draw(_BAD_CHANGE_NAME)
        return Rejected(name, payload, Expected(ProtocolError, words))

    def message(self) -> MessageItem:
        draw = self.draw
        if draw(st.booleans()):
            return MessageItem("post_liked", draw(_LIKE_DATA))
        return MessageItem(draw(_MESSAGE_NAME), draw(message_data))

    def bad_entry(self) -> Rejected:
        raw = self.draw(_BAD_ENTRY)
        return Rejected(
            BATCH, None, Expected(ProtocolError, ("[event_name, payload]",)), raw_entry=raw, is_raw=True
        )

    def batch_entry(self) -> Item:
        kind = self.draw(_ENTRY_KIND)
        if kind == "change":
            return self.change()
        if kind == "bad row":
            return self.change(bad_row=True)
        if kind == "bad change":
            return self.bad_change()
        if kind == "message":
            return self.message()
        return self.bad_entry()

    def snapshot(self) -> SnapshotItem:
        draw = self.draw
        topic = draw(_TOPIC)
        records = []
        if topic != "tags":
            records = [self.row(topic, bad=draw(_ONE_IN_SIX) == 0) for _ in range(draw(_SNAPSHOT_ROWS))]
        return SnapshotItem(topic, self.fresh(), records)

    def bad_snapshot(self) -> Rejected:
        draw = self.draw
        good = dict(self.snapshot().wire()[1])
        field = draw(_SNAPSHOT_FIELD)
        if field == "object":
            return Rejected(
                SNAPSHOT, draw(non_dicts), Expected(ProtocolError, ("snapshot frame must be an object",))
            )
        remove = draw(st.booleans())
        if field in ("topic", "event"):
            words: tuple[str, ...] = ("'topic' and 'event'",)
            if remove:
                del good[field]
            else:
                good[field] = draw(not_str)
        elif field == "seq":
            words = ("'seq'",)
            if remove:
                del good["seq"]
            else:
                good["seq"] = draw(_BAD_SEQ)
        elif field == "records":
            words = ("'records'",)
            if remove:
                del good["records"]
            else:
                good["records"] = draw(_NOT_LIST)
        else:
            words = ("'records'",)
            records = list(good["records"])
            records.insert(draw(_INDEX) % (len(records) + 1), draw(non_dicts))
            good["records"] = records
        return Rejected(SNAPSHOT, good, Expected(ProtocolError, words))

    def bad_batch(self) -> Rejected:
        return Rejected(BATCH, self.draw(_BAD_BATCH), Expected(ProtocolError, ("'events' list",)))

    def control(self) -> ControlItem:
        return ControlItem(self.draw(_CONTROL_NAME), self.draw(json_values))

    def item(self) -> Item:
        kind = self.draw(_ITEM_KIND)
        if kind == "change":
            return self.change()
        if kind == "bad row":
            return self.change(bad_row=True)
        if kind == "bad change":
            return self.bad_change()
        if kind == "message":
            return self.message()
        if kind == "batch":
            return BatchItem([self.batch_entry() for _ in range(self.draw(_BATCH_SIZE))])
        if kind == "snapshot":
            return self.snapshot()
        if kind == "bad snapshot":
            return self.bad_snapshot()
        if kind == "bad batch":
            return self.bad_batch()
        return self.control()


# -- checking --------------------------------------------------------------------


def assign(expected: Sequence[Expected], actual: Sequence[Exception]) -> bool:
    """Whether each actual error matches a distinct expected one (and none is left over)."""
    if len(expected) != len(actual):
        return False
    if not expected:
        return True
    first, rest = expected[0], expected[1:]
    for i, error in enumerate(actual):
        if first.matches(error) and assign(rest, [*actual[:i], *actual[i + 1 :]]):
            return True
    return False


def describe(errors: Sequence[Exception]) -> list[str]:
    return [f"{type(e).__name__}: {str(e)[:200]}" for e in errors]


def check_frame(client: Client, model: Model, item: Item) -> None:
    """Send one item as a frame and check it did exactly what the model says."""
    expected: list[Expected] = []
    before_model = model.key()
    before_emissions = len(client.emissions)
    before_cursor = client.root.cursor
    item.apply(model, expected)
    name, data = item.wire()
    errors = client.send(name, data)  # must not raise
    assert assign(expected, errors), (
        f"frame {name!r} {str(data)[:300]}\n expected {expected}\n got {describe(errors)}"
    )
    for error in errors:
        assert str(error).strip(), "an error must say what is wrong"
    # A row with an unhashable key notifies subscribers of an unchanged state (see test_client_bugs).
    spurious = any(word.startswith("unhashable") for e in expected for word in e.words)
    if model.key() == before_model and not isinstance(item, SnapshotItem | ControlItem) and not spurious:
        assert len(client.emissions) == before_emissions, (
            f"no-op frame {name!r} notified {client.emissions[before_emissions:]}"
        )
    if not (isinstance(item, ControlItem) and item.name == RESET):
        cursor = client.root.cursor
        assert before_cursor is None or (cursor is not None and cursor >= before_cursor), (
            "the cursor went back"
        )


def check_state(client: Client, model: Model) -> None:
    """The client's stores, cursor and hot stream equal the model."""
    assert client.root.cursor == model.cursor
    assert client.posts.value.to_dict() == model.rows["posts"]
    assert client.comments.value.to_dict() == model.rows["comments"]
    assert client.posts.seq == model.seqs["posts"] and client.comments.seq == model.seqs["comments"]
    assert client.likes.value == model.likes
    assert client.root.metrics.duplicates == model.duplicates
    assert client.recorder.names == model.hot
