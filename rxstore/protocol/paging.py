"""Paging a window: ``rxstore:more`` widens a window by ``n`` rows on the same connection.

A client that holds a window's first ``limit`` rows asks for ``n`` more with
``rxstore:more`` ``{"id": <subscription id>, "n": n}``; the gateway sends only
the rows after the last one the client holds (``rxstore:page`` frames, which
add to the window) and from then on the subscription's limit is ``limit + n``.
The request is checked here, the same on both sides (docs/protocol.md, "Paging").

Example:
    >>> from rxstore.protocol.subsets import Subset, window_of
    >>> newest = window_of(Subset("messages"), [["ts", "desc"]], 50)
    >>> more_of({"id": "chat", "n": 50})
    ('chat', 50)
    >>> widened(newest, 50).limit
    100
    >>> widened(newest, 951)
    Traceback (most recent call last):
        ...
    rxstore.protocol.subsets.SubsetError: more: the limit would be 1001, over 1000 (MAX_LIMIT)
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from rxstore.protocol.subsets import MAX_ID_CHARS, Subset, SubsetError
from rxstore.protocol.windows import MAX_LIMIT

__all__ = ["BAD_REQUEST", "more_of", "widened"]

BAD_REQUEST: Final = "bad_request"
"""The error code of a refused ``rxstore:more``."""


def more_of(data: Any) -> tuple[str, int]:
    """Read an ``rxstore:more`` request: ``(subscription id, n)``.

    Raises:
        SubsetError: ``bad_request``: not ``{"id": str, "n": int}``, or ``n`` below 1.
    """
    if type(data) is not dict:
        raise SubsetError("rxstore:more takes {'id': '<subscription id>', 'n': <rows>}", code=BAD_REQUEST)
    sub_id, n = data.get("id"), data.get("n")
    if type(sub_id) is not str or not 0 < len(sub_id) <= MAX_ID_CHARS:
        raise SubsetError(
            f"more: 'id' must be a subscription id string of 1-{MAX_ID_CHARS} characters", code=BAD_REQUEST
        )
    if type(n) is not int or n < 1:
        raise SubsetError(f"more: 'n' must be a positive integer, got {n!r:.40}", code=BAD_REQUEST)
    return sub_id, n


def widened(subset: Subset, n: int) -> Subset:
    """``subset``, a window with a ``limit``, kept to ``limit + n`` rows.

    Raises:
        SubsetError: ``bad_request``: not a window with a ``limit``, ``n`` below 1, or the
            new limit over :data:`~rxstore.protocol.windows.MAX_LIMIT`.
    """
    if type(n) is not int or n < 1:
        raise SubsetError(f"more: 'n' must be a positive integer, got {n!r:.40}", code=BAD_REQUEST)
    if subset.limit is None:
        raise SubsetError("more: only a window with a limit can be widened", code=BAD_REQUEST)
    limit = subset.limit + n
    if limit > MAX_LIMIT:
        raise SubsetError(f"more: the limit would be {limit}, over {MAX_LIMIT} (MAX_LIMIT)", code=BAD_REQUEST)
    return attrs.evolve(subset, limit=limit)
