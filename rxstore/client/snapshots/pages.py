"""``rxstore:page`` frames: rows that ``rxstore:more`` adds to a window, as PAGE events.

A page frame has a snapshot frame's shape, ``{"topic", "event", "seq",
"records"}``, and one meaning more: its rows *add to* the window of the
subscription ``event`` (they sort after every row it holds), they replace
nothing, and they move no cursor (docs/protocol.md, "Paging").

Example:
    >>> page_event({"topic": "messages", "event": "chat", "seq": 9, "records": [{"id": 3}]}).kind
    <EventKind.PAGE: 'page'>
"""

from __future__ import annotations

from typing import Any

from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import PAGE, Event, EventKind, Snapshot

__all__ = ["page_event"]


def page_event(data: Any) -> Event:
    """Validate an ``rxstore:page`` frame and return it as a PAGE event named for its subscription.

    Raises:
        ProtocolError: A malformed frame (it is not applied).
    """
    if type(data) is not dict:
        raise ProtocolError("page frame must be an object", event=PAGE, payload=data)
    topic, name, seq, records = data.get("topic"), data.get("event"), data.get("seq"), data.get("records")
    if type(topic) is not str or type(name) is not str:
        raise ProtocolError("page frame needs 'topic' and 'event' strings", event=PAGE, payload=data)
    if type(seq) is not int or seq < 0:
        raise ProtocolError("page frame needs a non-negative int 'seq'", event=PAGE, payload=data)
    if type(records) is not list or not all(type(r) is dict for r in records):
        raise ProtocolError("page frame needs a list of objects 'records'", event=PAGE, payload=data)
    return Event(name, Snapshot(topic, seq, tuple(records)), EventKind.PAGE, seq)
