"""Who sees what: a change as one user sees it, and the authorization hooks failing closed.

Pure functions of their arguments (plus the counting and logging of a hook
that raised), so that the rules are tested without a server:
``tests/gateway/queries/test_visibility.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from rxstore.gateway.access.auth import User
from rxstore.gateway.api import RowFilter
from rxstore.protocol.events import Change, Op

__all__ = ["Throttled", "events_for", "fail_closed", "visible_change"]

log = logging.getLogger("rxstore.gateway")


def visible_change(authorize: RowFilter, user: User, change: Change, primary_key: str) -> Change | None:
    """Rewrite a change as this user sees it: hidden rows vanish, revealed rows appear.

    An UPDATE that reveals a row is sent as an INSERT, one that hides it as a
    DELETE (of the old row, or of its key when the log has no old row).
    """
    topic = change.topic
    after = change.record is not None and authorize(user, topic, change.record)
    if change.op is Op.INSERT:
        return change if after else None
    before = change.old is not None and authorize(user, topic, change.old)
    if change.op is Op.DELETE:
        return change if before else None
    if after and before:
        return change
    if after:
        return attrs.evolve(change, op=Op.INSERT, old=None)
    if before or change.old is None:
        # Hidden now: the client must drop it (harmless if it never had it).
        old = change.old or {primary_key: (change.record or {}).get(primary_key)}
        return attrs.evolve(change, op=Op.DELETE, record=None, old=old)
    return None


def events_for(
    changes: Sequence[Change],
    *,
    user: User,
    topics: Collection[str],
    cursor: int,
    skip: Collection[int],
    authorize: RowFilter | None,
    names: Mapping[str, str],
    primary_keys: Mapping[str, str],
    key_only: Mapping[str, str],
) -> list[Any]:
    """The ``[event, payload]`` pairs of ``changes`` a client may see and has not seen.

    Args:
        changes: A batch read from the log, in seq order.
        user: Whom the client is.
        topics: The client's topics; other changes are left out.
        cursor: The last seq the client has; changes up to it are left out.
        skip: Seqs the client's snapshot already holds; left out.
        authorize: The row filter (``None``: every row is visible).
        names: Topic -> socket event name.
        primary_keys: Topic -> primary key.
        key_only: Topic -> primary key, for topics whose ``old`` is the key alone.
    """
    events: list[Any] = []
    for change in changes:
        if change.seq <= cursor or change.topic not in topics:
            continue
        if skip and change.seq in skip:
            continue
        if authorize is not None:
            visible = visible_change(authorize, user, change, primary_keys[change.topic])
            if visible is None:
                continue
            change = visible
        payload = change.to_payload()
        if key_only and change.old is not None and change.topic in key_only:
            key = key_only[change.topic]
            payload["old"] = {key: change.old.get(key)}
        events.append([names[change.topic], payload])
    return events


def fail_closed(authorize: RowFilter, failed: Callable[[User, str, Exception], None]) -> RowFilter:
    """Wrap ``authorize`` so that a call that raises denies that row to that user.

    Args:
        authorize: The application's row filter.
        failed: Called with ``(user, topic, exception)`` when it raised (to count and log it).
    """

    def guarded(user: User, topic: str, row: Mapping[str, Any]) -> bool:
        try:
            return bool(authorize(user, topic, row))
        except Exception as exc:
            failed(user, topic, exc)
            return False

    return guarded


class Throttled:
    """Logs a warning at most once per ``interval`` seconds, counting what it held back."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._next = 0.0
        self._held = 0

    def warning(self, message: str, *args: Any) -> None:
        """Log ``message % args`` unless one was logged less than ``interval`` seconds ago."""
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        held, self._held, self._next = self._held, 0, now + self.interval
        suffix = f" ({held} more like it in the last {self.interval:g} s)" if held else ""
        log.warning(message + suffix, *args)
