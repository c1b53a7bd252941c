"""Reading marble recordings (``MarbleTest.record``) with types."""

from __future__ import annotations

from typing import Any

from reactivex.notification import OnNext
from reactivex.testing.recorded import Recorded


def value_of(record: Recorded[Any]) -> Any:
    """The value of a recorded ``on_next`` notification; fails on any other notification."""
    notification = record.value
    assert isinstance(notification, OnNext), f"not an on_next: {notification}"
    return notification.value
