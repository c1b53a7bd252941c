"""rxstore:page frames: rows rxstore:more adds to a window, checked before any store sees them."""

from __future__ import annotations

from typing import Any

import pytest

from rxstore.client.snapshots.pages import page_event
from rxstore.protocol.errors import ProtocolError
from rxstore.protocol.events import EventKind


def test_a_page_becomes_a_page_event_named_for_its_subscription() -> None:
    """The event carries the rows as a Snapshot of them only, at the page's seq."""
    event = page_event({"topic": "messages", "event": "chat", "seq": 9, "records": [{"id": 3}, {"id": 2}]})
    assert (event.name, event.kind, event.seq) == ("chat", EventKind.PAGE, 9)
    assert event.data.records == ({"id": 3}, {"id": 2}) and event.data.topic == "messages"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "page frame must be an object"),
        ({"topic": "messages", "seq": 1, "records": []}, "needs 'topic' and 'event' strings"),
        ({"topic": "m", "event": "chat", "seq": -1, "records": []}, "non-negative int 'seq'"),
        ({"topic": "m", "event": "chat", "seq": 1, "records": [1]}, "a list of objects 'records'"),
    ],
)
def test_a_malformed_page_is_a_protocol_error(data: Any, message: str) -> None:
    """Each malformed field is named; nothing is applied."""
    with pytest.raises(ProtocolError, match=message):
        page_event(data)
