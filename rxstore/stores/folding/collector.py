"""CPython's cyclic garbage collector around a bulk build: paused during it, what it made aged at once.

A table's state built in bulk (a snapshot's rows, a state file's rows at start) makes
hundreds of thousands of new containers at once: the map's nodes, and records of attrs
classes. Left to itself the collector traverses each of them several times soon after:
in the young collection once it runs again, in the middle generation's after that, in a
full collection once they count as long-lived, and during the build too, ever more
often as the heap grows. :func:`collector_paused` pauses it for the build and then puts
every object into the oldest generation without traversing any (``gc.freeze()`` then
``gc.unfreeze()``: CPython's documented way, "put them back into the oldest
generation"), so the new objects are traversed by the next full collection only,
whenever the program's own allocations call for one.

What that changes for the program: cyclic garbage it made just before (young objects)
is collected by the next full collection instead of a young one. So only a build of at
least :data:`AGED_ROWS` rows ages the heap (a small snapshot, say of a ``where`` switch,
only pauses the collector): big builds are rare, and each ages at most the young garbage
of that moment. Nothing stays frozen, and a program that froze objects itself
(a freeze count above :data:`STARTUP_FROZEN`, say before a fork) keeps them frozen: its
heap is then only resumed, not aged.

Measured (docs/benchmarks.md, initial sync): a map of 200,000 dict rows, CPU after the
build until the collector had caught up: 0.14-0.16 s resumed as it was, 0.002 s aged.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Final

__all__ = ["AGED_ROWS", "STARTUP_FROZEN", "collector_paused"]

AGED_ROWS: Final = 10_000
"""The rows from which a bulk build ages the heap when it is done (below it, the collector only pauses)."""

STARTUP_FROZEN: Final = gc.get_freeze_count()
"""Objects frozen before this module was imported: the interpreter's own (CPython 3.12.1 starts
with 375), counted as nobody's: only a freeze count above it is a program's (aging thaws them
with the rest: they go to the oldest generation)."""


@contextlib.contextmanager
def collector_paused(rows: int) -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk build of ``rows`` rows, then resume it.

    A build of at least :data:`AGED_ROWS` rows ages every object into the oldest
    generation before the collector resumes. If the collector was disabled already
    (by the program, or by an outer ``collector_paused``), it is left so: the outer
    one ages and resumes.

    Example:
        >>> import gc
        >>> with collector_paused(100_000):
        ...     built = [[n] for n in range(100_000)]
        ...     gc.isenabled()
        False
        >>> gc.isenabled(), gc.get_freeze_count(), any(o is built for o in gc.get_objects(generation=2))
        (True, 0, True)
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            # a program's own frozen objects (a freeze count) would be thawed too: then only resume
            if rows >= AGED_ROWS and gc.get_freeze_count() <= STARTUP_FROZEN:
                gc.freeze()  # every tracked object into the permanent generation (a list splice) ...
                gc.unfreeze()  # ... and from there into the oldest one: nothing traversed
            gc.enable()
