"""Marble testing for stores and whole root stores, in virtual time.

Typed helpers over reactivex's ``TestScheduler`` plus a virtual link, so a
:class:`~rxstore.client.root.RootStore` with its stores runs without a socket,
connect / disconnect / reconnect included: the root's own connection loop runs
on a :class:`VirtualLoop`, an asyncio event loop on the scheduler's clock, so
its backoff, ``max_attempts`` and token refreshes take virtual seconds.

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

The ``link`` diagram of :meth:`MarbleTest.root` says how the gateway answers
the root's connection attempts from each letter on: ``c`` accepts (replaying
the changes the root missed, then going live), ``x`` drops the connection (the
next attempt waits for the next letter), ``r`` refuses (``invalid_token``),
``u`` is unreachable; a letter ``values`` maps to a ``ConnectionRefused``
refuses with it. The root starts at tick 0; without a ``link`` diagram it is
connected at once.

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
from rxstore.testing.replay import Replay
from rxstore.testing.virtual_gateway import VirtualGateway, Write, write
from rxstore.testing.virtual_loop import VirtualLoop
from rxstore.testing.virtual_presence import (
    PresenceChange,
    VirtualPresence,
    presence_join,
    presence_leave,
    presence_update,
)

__all__ = [
    "Frame",
    "MarbleTest",
    "PresenceChange",
    "Replay",
    "VirtualGateway",
    "VirtualLink",
    "VirtualLoop",
    "VirtualPresence",
    "Write",
    "batch_frame",
    "change",
    "change_frame",
    "marbles",
    "message",
    "message_frame",
    "on_next",
    "presence_join",
    "presence_leave",
    "presence_update",
    "snapshot",
    "snapshot_frame",
    "write",
]
