"""A virtual gateway's tables, for marble tests of live queries (part of :mod:`rxstore.testing`).

:class:`VirtualGateway` holds the rows of some tables and a change log. Plugged
into a :class:`~rxstore.testing.VirtualLink` (``m.root(..., tables=...)``), it
serves the root's subscriptions the way the gateway does (docs/protocol.md):
a snapshot of each subset (:meth:`Subset.matches <rxstore.protocol.subsets.Subset.matches>`,
projected to its columns) on a first connect, the missed changes on a
reconnect (``since`` honoured), each write to every subscription it concerns
(a row entering a subset as an INSERT, one leaving it as a DELETE with only its
key), and ``rxstore:subscribe`` / ``rxstore:unsubscribe`` with their
acknowledgements, so a channel switch runs in virtual time.

Windows (``order_by`` / ``limit`` / ``after``) are served as the gateway serves
them: a snapshot of the first ``limit`` rows in order; a row entering a full
window as an INSERT whose ``"out"`` names the last row; a row leaving a window
that is not full as a DELETE; one leaving a full window (or moving past its
last row) as a refill, an ``rxstore:snapshot`` of the window at that write's
seq; a reconnect reads windows fresh; ``rxstore:more`` sends an ``rxstore:page``
of the rows after the window's last. A ``{"claim": name}`` value is filled in
from ``claims=`` (the virtual link's tokens are opaque).

Relations (an ``in`` term whose values are a subquery on another table) are
evaluated with the related table's rows at each write: a write to the
subscription's own table is an envelope as for any subset; a write to the
related table that adds or removes a value sends an ``rxstore:snapshot`` of the
subscription at that seq (its rows moving in or out), one that leaves the
values as they were sends nothing; a reconnect reads relations fresh. The bound
is the gateway's: a subquery selecting more than ``MAX_RELATION_VALUES`` rows is
refused at ``rxstore:subscribe`` (``invalid_subscription``); one in the connect
payload, or one that grows past it later, is *ended* (an empty snapshot, then
nothing) until it is subscribed again or a reconnect reads it under the bound.

Example:
    >>> from rxstore import TableStore
    >>> from rxstore.testing import marbles, write
    >>> class Messages(TableStore[dict]):
    ...     table = "messages"
    >>> rows = [{"id": 1, "channel": "a"}, {"id": 2, "channel": "b"}]
    >>> new = write("messages", "INSERT", {"id": 3, "channel": "b"})
    >>> with marbles() as m:
    ...     inbox = Messages(where={"channel": "a"})
    ...     root = m.root([inbox], tables={"messages": rows}, server="--w", values={"w": new})
    ...     done = m.call(1, lambda: inbox.where({"channel": "b"}))
    ...     m.run()
    >>> sorted(inbox.value.rows), done[0].where
    ([2, 3], (Term(column='channel', op='=', value='b'),))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from rxstore.protocol.events import BATCH, MORE, PAGE, RESET, SNAPSHOT, Op, topic_event_name
from rxstore.protocol.paging import BAD_REQUEST, more_of, widened
from rxstore.protocol.subsets import MAX_RELATION_VALUES, Relation, Subset, SubsetError, parse_subscription
from rxstore.testing.frames import Frame

__all__ = ["VirtualGateway", "Write", "write"]


class _Link(Protocol):
    up: bool

    def send(self, frame: Frame) -> None: ...


@attrs.frozen
class Write:
    """A write to a virtual gateway's table (a value of a marble ``server`` diagram)."""

    topic: str
    op: Op
    row: Mapping[str, Any]


def write(topic: str, op: str | Op, row: Mapping[str, Any]) -> Write:
    """A write: INSERT or UPDATE ``row`` (a whole row), or DELETE the row with ``row``'s key."""
    return Write(topic, Op(op), dict(row))


@attrs.frozen
class _Logged:
    seq: int
    topic: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None


class VirtualGateway:
    """Tables, a change log and one client's subscriptions, served through a virtual link.

    Args:
        link: Where frames go (a :class:`~rxstore.testing.VirtualLink`).
        tables: Each table's rows at the start (seq 0).
        key: The primary key of every table.
        forbidden: Topics a subscription is refused for (``forbidden_topic``).
        claims: The claims of the client's token: what ``{"claim": name}`` values become.

    Attributes:
        rows: Table -> key -> row, now.
        seq: The last change's seq.
        subscriptions: Id -> subset (claims filled in): what the connected client follows.
        windows: Id -> the keys a window subscription's client holds, in order.
        ended: Ids of relations whose subquery selected more than ``MAX_RELATION_VALUES`` rows.
    """

    def __init__(
        self,
        link: _Link,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        key: str = "id",
        forbidden: Sequence[str] = (),
        claims: Mapping[str, Any] | None = None,
    ) -> None:
        self.link = link
        self.key = key
        self.forbidden = frozenset(forbidden)
        self.claims = dict(claims or {})
        self.rows: dict[str, dict[Any, Mapping[str, Any]]] = {
            topic: {row[key]: dict(row) for row in rows} for topic, rows in tables.items()
        }
        self.seq = 0
        self.subscriptions: dict[str, Subset] = {}
        self.windows: dict[str, list[Any]] = {}
        self.ended: set[str] = set()
        self._since: dict[str, int] = {}
        self._log: list[_Logged] = []

    # -- driven by the test ----------------------------------------------------

    def write(self, change: Write) -> int:
        """Apply ``change``, log it, send it to the subscriptions it concerns (if connected); its seq."""
        related = [(i, subset) for i, subset in self._related(change.topic) if i not in self.ended]
        before = {sub_id: self._values(subset) for sub_id, subset in related}
        table = self.rows.setdefault(change.topic, {})
        key = change.row[self.key]
        old = table.get(key)
        new = None if change.op is Op.DELETE else dict(change.row)
        if new is None:
            table.pop(key, None)
        else:
            table[key] = new
        self.seq += 1
        logged = _Logged(self.seq, change.topic, old, new)
        self._log.append(logged)
        if self.link.up:
            over = {sub_id for sub_id, subset in related if self._over(subset)}
            self.ended |= over
            moved = [i for i, subset in related if i in over or self._values(subset) != before[i]]
            self._send(
                [
                    *self._frames_of(logged, live=True),
                    *(self._snapshot(i, self.subscriptions[i]) for i in moved),
                ]
            )
        return self.seq

    # -- the gateway's side of the protocol -------------------------------------

    def connect(self, auth: Mapping[str, Any], *, reset: bool = False) -> list[Frame]:
        """A client connects with ``auth``: what the gateway sends before ``rxstore:live``."""
        self.subscriptions = {topic_event_name(t): Subset(t) for t in auth.get("topics") or ()}
        self._since, self.windows = {}, {}
        for data in auth.get("subscriptions") or ():
            sub_id, subset, since = parse_subscription(data)
            self.subscriptions[sub_id] = subset.resolve(self.claims)
            if since is not None:
                self._since[sub_id] = since
        self.ended = {i for i, subset in self.subscriptions.items() if self._over(subset)}
        cursor = auth.get("cursor")
        frames = []
        if reset:
            frames.append(Frame(RESET, {"reason": "epoch_changed", "cursor": cursor, "horizon": 0}))
        if cursor is None or reset:
            frames.extend(self._snapshot(sub_id, subset) for sub_id, subset in self.subscriptions.items())
            return frames
        missed = [frame for entry in self._log if entry.seq > cursor for frame in self._frames_of(entry)]
        if missed:
            frames.append(Frame(BATCH, {"events": [[f.name, f.data] for f in missed]}))
        fresh = [(i, subset) for i, subset in self.subscriptions.items() if _read_fresh(subset)]
        frames.extend(self._snapshot(sub_id, subset) for sub_id, subset in fresh)
        return frames

    def call(self, event: str, data: Any) -> dict[str, Any]:
        """Answer ``rxstore:subscribe`` (its snapshot first), ``rxstore:unsubscribe`` or ``rxstore:more``."""
        if event == MORE:
            return self._more(data)
        if event.endswith("unsubscribe"):
            known = type(data) is dict and self.subscriptions.pop(str(data.get("id")), None) is not None
            self.ended.discard(str(data.get("id")) if type(data) is dict else "")
            return {"ok": True} if known else {"ok": False, "error": "invalid_subscription"}
        try:
            sub_id, subset, _since = parse_subscription(data)
            term = subset.relation
            for topic in (subset.topic, *(() if term is None else (term.value.topic,))):
                if topic not in self.rows or topic in self.forbidden:
                    raise SubsetError(f"no subscription to {topic!r}", code="forbidden_topic")
            subset = subset.resolve(self.claims)
            if self._over(subset):
                assert term is not None
                raise SubsetError(term.value.too_many(MAX_RELATION_VALUES))
        except SubsetError as exc:
            return {"ok": False, "error": exc.code, "message": str(exc)}
        self.subscriptions[sub_id] = subset
        self.ended.discard(sub_id)
        self._since.pop(sub_id, None)
        self._send([self._snapshot(sub_id, subset)])
        return {"ok": True, "seq": self.seq}

    def _more(self, data: Any) -> dict[str, Any]:
        """Widen a window: an ``rxstore:page`` of the rows after those the client holds, then the ack."""
        try:
            sub_id, n = more_of(data)
            subset = self.subscriptions.get(sub_id)
            if subset is None:
                raise SubsetError(f"more: no subscription {sub_id!r} on this connection", code=BAD_REQUEST)
            subset = widened(subset, n)
        except SubsetError as exc:
            return {"ok": False, "error": exc.code, "message": str(exc)}
        self.subscriptions[sub_id] = subset
        held = self.windows.get(sub_id, [])
        rows = [] if sub_id in self.ended else self._rows_of(subset)
        self.windows[sub_id] = [row[self.key] for row in rows]
        added = rows[len(held) :]  # the window held the first rows: these come after them
        if added:
            records = [subset.project(row, self.key) for row in added]
            page = {"topic": subset.topic, "event": sub_id, "seq": self.seq, "records": records}
            self.link.send(Frame(PAGE, page))
        return {"ok": True, "seq": self.seq, "added": len(added), "limit": subset.limit}

    # -- helpers ---------------------------------------------------------------

    def _send(self, frames: Sequence[Frame]) -> None:
        changes = [frame for frame in frames if frame.name != SNAPSHOT]
        if len(changes) == 1:
            self.link.send(changes[0])
        elif changes:
            self.link.send(Frame(BATCH, {"events": [[f.name, f.data] for f in changes]}))
        for frame in frames:
            if frame.name == SNAPSHOT:  # a window's refill: never inside a batch
                self.link.send(frame)

    def _snapshot(self, sub_id: str, subset: Subset) -> Frame:
        rows = [] if sub_id in self.ended else self._rows_of(subset)
        if subset.windowed:
            self.windows[sub_id] = [row[self.key] for row in rows]
        records = [subset.project(row, self.key) for row in rows]
        data = {"topic": subset.topic, "event": sub_id, "seq": self.seq, "records": records, "more": False}
        return Frame(SNAPSHOT, data)

    def _related(self, topic: str) -> list[tuple[str, Subset]]:
        """The subscriptions whose relation reads ``topic``."""
        return [
            (sub_id, subset)
            for sub_id, subset in self.subscriptions.items()
            if (term := subset.relation) is not None and term.value.topic == topic
        ]

    def _selected(self, subset: Subset) -> list[Any]:
        """The value of each related row ``subset``'s relation selects now (none without one)."""
        term = subset.relation
        if term is None:
            return []
        relation: Relation = term.value
        return relation.selected(self.rows.get(relation.topic, {}).values())

    def _values(self, subset: Subset) -> frozenset[Any]:
        """The values of ``subset``'s relation term now (empty without one)."""
        return frozenset(self._selected(subset))

    def _over(self, subset: Subset) -> bool:
        """Whether ``subset``'s relation selects more rows than ``MAX_RELATION_VALUES``."""
        return len(self._selected(subset)) > MAX_RELATION_VALUES

    def _bound(self, subset: Subset) -> Subset:
        """``subset`` with its relation's values as the tables hold them now."""
        return subset.bound(self._values(subset)) if subset.relation is not None else subset

    def _rows_of(self, subset: Subset) -> list[Mapping[str, Any]]:
        """The rows of ``subset`` now: a window's first ``limit`` in its order."""
        bound = self._bound(subset)
        rows = [row for row in self.rows.get(subset.topic, {}).values() if bound.matches(row)]
        if not subset.windowed:
            return rows
        key = self.key
        placed = [(place, row) for row in rows if (place := subset.place(row, key)) is not None]
        placed.sort(key=lambda pair: pair[0])
        return [row for _, row in placed[: subset.limit]]

    def _frames_of(self, entry: _Logged, *, live: bool = False) -> list[Frame]:
        """The change ``entry`` as each subscription sees it (same seq under every id).

        A window or a relation is served only ``live`` (a replay reads it fresh instead).
        """
        frames = []
        for sub_id, subset in self.subscriptions.items():
            if sub_id in self.ended:
                continue
            if subset.topic == entry.topic and entry.seq > self._since.get(sub_id, -1):
                if not live and _read_fresh(subset):
                    continue
                if subset.windowed:
                    frame = self._window_frame(sub_id, subset, entry) if live else None
                    if frame is not None:
                        frames.append(frame)
                    continue
                envelope = self._envelope(subset, entry)
                if envelope is not None:
                    frames.append(Frame(sub_id, envelope))
        return frames

    def _window_frame(self, sub_id: str, subset: Subset, entry: _Logged) -> Frame | None:
        """What a write is to a window: an INSERT (with ``out``), UPDATE, DELETE, a refill, or nothing."""
        key = self.key
        held = self.windows.get(sub_id, [])
        rows = self._rows_of(subset)
        now = [row[key] for row in rows]
        changed = (entry.new or entry.old or {}).get(key)
        came, went = [k for k in now if k not in held], [k for k in held if k not in now]
        full = subset.limit is not None and len(held) >= subset.limit
        envelope: dict[str, Any] = {"seq": entry.seq, "topic": entry.topic, "ts": 0.0}
        if came == [changed] and (not went or (full and went == [held[-1]])):
            envelope.update(op="INSERT", record=subset.project(entry.new or {}, key), old=None)
            if went:
                envelope["out"] = [{key: went[0]}]
        elif not came and not went and changed in now:
            old = subset.project(entry.old or {}, key)
            envelope.update(op="UPDATE", record=subset.project(entry.new or {}, key), old=old)
        elif not came and went == [changed] and not full:
            envelope.update(op="DELETE", record=None, old={key: changed})
        elif not came and not went:
            return None  # beyond the window, or not in it
        else:  # a row beyond the window comes in: read it again at this seq
            return self._snapshot(sub_id, subset)
        self.windows[sub_id] = now
        return Frame(sub_id, envelope)

    def _envelope(self, subset: Subset, entry: _Logged) -> dict[str, Any] | None:
        bound = self._bound(subset)  # a write to its own table leaves the relation's values as they were
        was, now = bound.matches(entry.old), bound.matches(entry.new)
        if not was and not now:
            return None
        key = self.key
        record = old = None
        if now and entry.new is not None:
            record = subset.project(entry.new, key)
        if was and entry.old is not None:
            old = subset.project(entry.old, key) if now or subset.whole else {key: entry.old[key]}
        op = Op.UPDATE if was and now else Op.INSERT if now else Op.DELETE
        return {
            "seq": entry.seq,
            "topic": entry.topic,
            "op": op.value,
            "record": record,
            "old": old,
            "ts": 0.0,
        }


def _read_fresh(subset: Subset) -> bool:
    """Whether a reconnect reads ``subset`` again rather than replay its changes: a window, a relation."""
    return subset.windowed or subset.relation is not None
