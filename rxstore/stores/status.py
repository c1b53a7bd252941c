"""A table store's sync status: how fresh its data is (``store.status``)."""

from __future__ import annotations

import enum
import time

import attrs

__all__ = ["SyncState", "SyncStatus"]


class SyncState(enum.Enum):
    """How fresh a table store's data is.

    Example:
        >>> SyncState("live") is SyncState.LIVE
        True
    """

    STALE = "stale"
    """Not connected: the data may be old (see ``SyncStatus.lag``)."""
    REPLAYING = "replaying"
    """Connected and catching up (snapshot or replay after the cursor)."""
    LIVE = "live"
    """Caught up; changes arrive as they are committed."""


@attrs.frozen
class SyncStatus:
    """The sync status of a table store, as ``store.status`` emits it.

    Attributes:
        state: Stale, replaying or live.
        cursor: Seq of the last change applied.
        since: Unix time the store entered this state.
        from_disk: The rows were loaded from the root's state file (``RootStore(persist=...)``)
            and the store has not been live since: they may be old (Firestore's ``fromCache``).

    Example:
        >>> SyncStatus(SyncState.LIVE, cursor=12, since=0.0).lag
        0.0
    """

    state: SyncState
    cursor: int | None = None
    since: float = 0.0
    from_disk: bool = False

    @property
    def lag(self) -> float:
        """Seconds the data may be behind: time since it went stale, 0 otherwise."""
        if self.state is SyncState.STALE and self.since:
            return max(0.0, time.time() - self.since)
        return 0.0
