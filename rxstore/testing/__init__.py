"""Marble testing for stores and whole root stores, in virtual time.

Typed helpers over reactivex's ``TestScheduler`` plus a virtual link, so a
:class:`~rxstore.client.root.RootStore` with its stores runs without a socket or an
event loop, connect / disconnect / reconnect included.

The marble alphabet (one character = one tick = ``timespan`` virtual seconds):

====================  ==========================================================
``-``                 one tick passes, nothing happens
``a`` (any other)     a value at this tick: ``values["a"]``, or the character itself
``(ab)``              ``a`` and ``b`` at the same tick, in that order; the
                      whole group takes one tick
``|``                 completion
``#``                 error (the ``error`` argument)
space                 ignored (takes no time); use it to align diagrams
====================  ==========================================================

The ``link`` diagram of :meth:`MarbleTest.root` uses fixed letters:
``c`` the gateway accepts the connection (replaying the changes the root
missed, then going live), ``x`` the connection drops, ``r`` the gateway refuses
the connection (``invalid_token``). Without a ``link`` diagram the root is
connected at tick 0.

Example:
    >>> import attrs
    >>> from rxstore import DomainStore
    >>> @attrs.frozen
    ... class Count:
    ...     n: int = 0
    >>> class Counter(DomainStore[Count]):
    ...     accepts = ("tick",)
    ...     initial = Count()
    ...     def reduce(self, state, event):
    ...         return Count(state.n + 1)
    >>> with marbles() as m:
    ...     counter = Counter()
    ...     root = m.root([counter], server="-t-t", values={"t": message_frame("tick")})
    ...     states = m.record(counter.state)
    ...     m.run()
    >>> states == m.expected("ab-c", {"a": Count(0), "b": Count(1), "c": Count(2)})
    True
"""

from rxstore.testing.frames import (
    Frame,
    batch_frame,
    change,
    change_frame,
    message,
    message_frame,
    snapshot,
    snapshot_frame,
)
from rxstore.testing.link import VirtualLink
from rxstore.testing.marbles import MarbleTest, marbles, on_next
from rxstore.testing.virtual_gateway import VirtualGateway, Write, write

__all__ = [
    "Frame",
    "MarbleTest",
    "VirtualGateway",
    "VirtualLink",
    "Write",
    "batch_frame",
    "change",
    "change_frame",
    "marbles",
    "message",
    "message_frame",
    "on_next",
    "snapshot",
    "snapshot_frame",
    "write",
]
