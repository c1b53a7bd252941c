"""Operators for store pipelines: a keyed view of the root's stream, a filter and scans that isolate.

A store is ``frames -> filter -> scan -> BehaviorSubject``, where *frames* are
the events of one incoming frame that the store's names pick out
(:func:`named`). A reducer or predicate that raises never errors the
pipeline: the frame's other events still apply, and the failure goes to
``on_error`` as a :class:`~rxstore.protocol.errors.StoreError` (by default, on a keyed
view of a root, to ``root.errors``).

Example:
    >>> from reactivex.subject import BehaviorSubject, Subject
    >>> from rxstore.protocol.events import Event
    >>> events: Subject[Event] = Subject()
    >>> likes = BehaviorSubject(0)
    >>> errors = []
    >>> _ = events.pipe(
    ...     named("post_liked"),
    ...     safe_scan(lambda n, e: n + e.data["n"], 0, on_error=errors.append),
    ... ).subscribe(likes.on_next)
    >>> for data in ({"n": 2}, {}, {"n": 3}):
    ...     events.on_next(Event("post_liked", data))
    >>> likes.value, len(errors)
    (5, 1)
"""

from rxstore.operators.keyed import EventStream, Frame, named
from rxstore.operators.scans import filter_events, safe_scan, safe_scan_frames, subscribe_direct

__all__ = [
    "EventStream",
    "Frame",
    "filter_events",
    "named",
    "safe_scan",
    "safe_scan_frames",
    "subscribe_direct",
]
