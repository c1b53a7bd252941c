"""Events, change envelopes and their validation.

Every socket event becomes an :class:`Event`. Events that carry a row change
from the gateway's change log also carry a parsed :class:`Change`; the
envelope format is specified in ``docs/protocol.md``.
"""

from __future__ import annotations

import enum
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from rxstore.protocol.errors import ProtocolError

__all__ = [
    "BATCH",
    "BROADCAST",
    "CLOSING",
    "CONTROL_PREFIX",
    "LIVE",
    "MORE",
    "MUTATE",
    "PAGE",
    "RESET",
    "ROW_OF",
    "SNAPSHOT",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "Change",
    "Event",
    "EventKind",
    "Op",
    "Snapshot",
    "check_envelope",
    "envelope_seq",
    "parse_change",
    "topic_event_name",
]

CONTROL_PREFIX: Final = "rxstore:"
BATCH: Final = "rxstore:batch"
SNAPSHOT: Final = "rxstore:snapshot"
RESET: Final = "rxstore:reset"
LIVE: Final = "rxstore:live"
MUTATE: Final = "rxstore:mutate"
BROADCAST: Final = "rxstore:broadcast"
CLOSING: Final = "rxstore:closing"
"""Sent by the gateway just before it ends a session: ``{"reason", "message"}``."""
SUBSCRIBE: Final = "rxstore:subscribe"
"""Client -> gateway: follow a subset (or switch one): a subscription object (docs/protocol.md)."""
UNSUBSCRIBE: Final = "rxstore:unsubscribe"
"""Client -> gateway: stop following a subscription: ``{"id"}``."""
MORE: Final = "rxstore:more"
"""Client -> gateway: widen a window by ``n`` rows: ``{"id", "n"}`` (docs/protocol.md, "Paging")."""
PAGE: Final = "rxstore:page"
"""Gateway -> client: rows added to a window by ``rxstore:more``: ``{"topic", "event", "seq", "records"}``."""


class Op(enum.StrEnum):
    """The kind of row change.

    Example:
        >>> Op("UPDATE") is Op.UPDATE, Op.DELETE == "DELETE"
        (True, True)
    """

    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


_OPS: Final = {op.value: op for op in Op}

ROW_OF: Final[dict[str, str]] = {"INSERT": "record", "UPDATE": "record", "DELETE": "old"}
"""The envelope field that carries a change's row, by ``op``: it must be an object (the one rule
:func:`check_envelope`, the client's router and the table fold all read)."""


class EventKind(enum.Enum):
    """What an :class:`Event` carries.

    Example:
        >>> Event("post_liked").kind
        <EventKind.MESSAGE: 'message'>
        >>> from rxstore.testing import change
        >>> change("posts", 1, "INSERT", {"id": "p1"}).kind
        <EventKind.CHANGE: 'change'>
    """

    MESSAGE = "message"
    """Any socket event that is not a logged change (e.g. ``post_liked``)."""
    CHANGE = "change"
    """One row change from the change log; ``event.change`` is set."""
    SNAPSHOT = "snapshot"
    """The whole content of a topic at ``event.seq``; ``event.data`` is a :class:`Snapshot`."""
    RESET = "reset"
    """The client's cursor is older than the log; snapshots follow."""
    PAGE = "page"
    """Rows added to a window (``rxstore:more``); ``event.data`` is a :class:`Snapshot` of those rows only."""


# Change and Event are built once per incoming change, so their ``__init__`` is
# written by hand (``init=False``): it stores the fields through the slots'
# descriptors, which costs about half of attrs' frozen ``object.__setattr__``
# calls. Same signature, defaults and immutability as the generated one.


@attrs.frozen(slots=True, init=False)
class Change:
    """One row change from the gateway's durable change log.

    Attributes:
        seq: Global, monotonic, durable position in the change log.
        topic: The topic (table) the row belongs to.
        op: INSERT, UPDATE or DELETE.
        record: The row after the change; ``None`` for DELETE.
        old: The row before the change; ``None`` for INSERT.
        ts: Commit time of the change, Unix seconds.
        mutation: Id of the client mutation that wrote it, if one did.

    Example:
        >>> c = Change(seq=1, topic="posts", op=Op.INSERT, record={"id": "p1"}, old=None, ts=0.0)
        >>> c.key("id")
        'p1'
    """

    seq: int
    topic: str
    op: Op
    record: Mapping[str, Any] | None
    old: Mapping[str, Any] | None
    ts: float
    mutation: str | None = None

    def __init__(
        self,
        seq: int,
        topic: str,
        op: Op,
        record: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
        ts: float,
        mutation: str | None = None,
    ) -> None:
        _change_seq(self, seq)
        _change_topic(self, topic)
        _change_op(self, op)
        _change_record(self, record)
        _change_old(self, old)
        _change_ts(self, ts)
        _change_mutation(self, mutation)

    def key(self, primary_key: str) -> Any:
        """Return the primary key of the changed row.

        Raises:
            ProtocolError: The row does not carry the key.
        """
        row = self.record if self.record is not None else self.old
        try:
            return row[primary_key]  # type: ignore[index]
        except (KeyError, TypeError) as exc:
            raise ProtocolError(
                f"change seq={self.seq} on {self.topic!r} has no {primary_key!r} in its row"
            ) from exc

    def to_payload(self) -> dict[str, Any]:
        """Return the wire form of this change (see ``docs/protocol.md``)."""
        payload = {
            "seq": self.seq,
            "topic": self.topic,
            "op": self.op.value,
            "record": self.record,
            "old": self.old,
            "ts": self.ts,
        }
        if self.mutation is not None:
            payload["mutation"] = self.mutation
        return payload


@attrs.frozen(slots=True)
class Snapshot:
    """The rows of one topic as of change-log position ``seq``.

    Example:
        >>> len(Snapshot(topic="posts", seq=3, records=({"id": "p1"},)).records)
        1
    """

    topic: str
    seq: int
    records: tuple[Mapping[str, Any], ...]


@attrs.frozen(slots=True, init=False)
class Event:
    """One socket event, as seen by stores.

    Attributes:
        name: The socket event name (``post_update``, ``post_liked``, ...).
        data: The payload: the change envelope (wire form, see ``docs/protocol.md``)
            for CHANGE events, a :class:`Snapshot` for SNAPSHOT and PAGE events.
        kind: What the event carries.
        seq: Change-log position for CHANGE, SNAPSHOT, PAGE and RESET events.

    Example:
        >>> Event("post_liked", {"post_id": "p1"}).kind
        <EventKind.MESSAGE: 'message'>
    """

    name: str
    data: Any = None
    kind: EventKind = EventKind.MESSAGE
    seq: int | None = None
    _change: Change | None = attrs.field(default=None, alias="change", eq=False, repr=False)
    """Set when built from a :class:`Change`, else made from ``data`` on first use."""

    @property
    def change(self) -> Change | None:
        """The parsed change of a CHANGE event (``None`` for other kinds).

        The root store validates every envelope as it arrives but builds the
        :class:`Change` value only when something asks for it here (a
        ``TableStore`` reads the envelope itself), which saves most of the
        per-change cost of a batch.

        Example:
            >>> from rxstore.testing import change
            >>> change("posts", 3, "DELETE", {"id": "p1"}).change.key("id")
            'p1'
        """
        change = self._change
        if change is None and self.kind is EventKind.CHANGE:
            change = parse_change(self.data, event=self.name)
            _event_change(self, change)
        return change

    def __init__(
        self,
        name: str,
        data: Any = None,
        kind: EventKind = EventKind.MESSAGE,
        seq: int | None = None,
        change: Change | None = None,
    ) -> None:
        _event_name(self, name)
        _event_data(self, data)
        _event_kind(self, kind)
        _event_seq(self, seq)
        _event_change(self, change)

    @classmethod
    def from_change(cls, name: str, change: Change) -> Event:
        """Wrap a parsed change as the event ``name``."""
        return cls(name, change.to_payload(), EventKind.CHANGE, change.seq, change)


_Setter = Callable[[Any, Any], None]


def _setters(cls: type, names: str) -> tuple[_Setter, ...]:
    """The ``__set__`` of each named slot descriptor of ``cls`` (bypasses the frozen ``__setattr__``)."""
    return tuple(cls.__dict__[name].__set__ for name in names.split())


_change_seq, _change_topic, _change_op, _change_record, _change_old, _change_ts, _change_mutation = _setters(
    Change, "seq topic op record old ts mutation"
)
_event_name, _event_data, _event_kind, _event_seq, _event_change = _setters(
    Event, "name data kind seq _change"
)


def check_envelope(payload: Any) -> int | str:
    """The rules of a change envelope, in one place: its ``seq`` if well formed, else what is wrong.

    The root store runs this on every incoming change (it builds nothing);
    :func:`parse_change` runs it too, then builds the :class:`Change`. The
    format is specified in ``docs/protocol.md``.

    Example:
        >>> check_envelope({"seq": 7, "topic": "posts", "op": "INSERT", "record": {"id": 1}, "ts": 1.5})
        7
        >>> check_envelope({"seq": 7, "topic": "posts", "op": "INSERT", "record": None})
        "INSERT change envelope needs 'record'"
    """
    if type(payload) is not dict:
        return f"change envelope must be an object, got {type(payload).__name__}"
    get = payload.get
    seq = get("seq")
    if type(seq) is not int or seq < 0:
        problem = f"change envelope 'seq' must be a non-negative int, got {_shown(seq)}"
        return _missing(payload, "seq") or problem
    topic = get("topic")
    if type(topic) is not str:
        return _missing(payload, "topic") or f"change envelope 'topic' must be a string, got {_shown(topic)}"
    op = get("op")
    needs = ROW_OF.get(op) if type(op) is str else None
    if needs is None:
        problem = f"change envelope has an invalid op {_shown(op)} (INSERT, UPDATE or DELETE)"
        return _missing(payload, "op") or problem
    row, other = get(needs), get("old" if needs == "record" else "record")
    if type(row) is not dict or (other is not None and type(other) is not dict):
        for field, value in (("record", get("record")), ("old", get("old"))):
            if value is not None and type(value) is not dict:
                return f"change envelope {field!r} must be an object or null"
        return f"{op} change envelope needs {needs!r}"
    ts = get("ts", 0.0)
    if type(ts) is not float:
        if type(ts) is not int:
            return f"change envelope 'ts' must be a number, got {_shown(ts)}"
        try:
            float(ts)
        except OverflowError:
            return "change envelope 'ts' is out of range"
    mutation = get("mutation")
    if mutation is not None and type(mutation) is not str:
        return "change envelope 'mutation' must be a string or null"
    out = get("out")
    if out is not None and (type(out) is not list or any(type(row) is not dict for row in out)):
        return "change envelope 'out' must be a list of objects or null"
    return seq


def _missing(payload: dict[str, Any], key: str) -> str | None:
    """The message for a required field that is not there at all (else ``None``)."""
    return None if key in payload else f"change envelope is missing {key!r}"


def parse_change(payload: Any, *, event: str | None = None) -> Change:
    """Validate a change envelope (see :func:`check_envelope`) and return it as a :class:`Change`.

    Args:
        payload: The decoded JSON (or msgpack) object.
        event: The socket event name, for the error message.

    Raises:
        ProtocolError: The envelope is malformed; the message says which field.

    Example:
        >>> parse_change({"seq": 7, "topic": "posts", "op": "DELETE",
        ...               "record": None, "old": {"id": "p1"}, "ts": 1.5}).op
        <Op.DELETE: 'DELETE'>
    """
    seq = check_envelope(payload)
    if isinstance(seq, str):
        raise ProtocolError(seq, event=event, payload=payload)
    get = payload.get
    return Change(
        payload["seq"],
        payload["topic"],
        _OPS[payload["op"]],
        get("record"),
        get("old"),
        float(get("ts", 0.0)),
        get("mutation"),
    )


def envelope_seq(payload: Any) -> int | None:
    """The ``seq`` of a well-formed change envelope, else ``None`` (:func:`check_envelope` says why).

    Example:
        >>> envelope_seq({"seq": 7, "topic": "posts", "op": "INSERT", "record": {"id": 1}, "ts": 1.5})
        7
        >>> envelope_seq({"seq": 7, "topic": "posts", "op": "INSERT", "record": None}) is None
        True
    """
    seq = check_envelope(payload)
    return None if isinstance(seq, str) else seq


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 60


def _shown(value: Any) -> str:
    """A bad value as quoted in an error message: bounded in length and depth."""
    return _REPR.repr(value)


def topic_event_name(topic: str) -> str:
    """Return the default socket event name of a topic's changes.

    The seed's ``posts`` table emits ``post_update``; other tables follow the
    same rule (singular + ``_update``). Both the gateway and ``TableStore``
    let you override it.

    Example:
        >>> topic_event_name("posts"), topic_event_name("categories"), topic_event_name("news")
        ('post_update', 'category_update', 'news_update')
    """
    if topic.endswith("ies") and len(topic) > 3:
        singular = topic[:-3] + "y"
    elif topic.endswith("s") and not topic.endswith("ss") and not topic.endswith("ews"):
        singular = topic[:-1]
    else:
        singular = topic
    return f"{singular}_update"
