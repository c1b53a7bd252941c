"""One recorded store: :class:`StoreEntry`."""

from __future__ import annotations

import attrs

__all__ = ["StoreEntry"]


@attrs.frozen
class StoreEntry:
    """One store whose states are recorded.

    Attributes:
        name: Its name (``store.name``).
        cls: Its class, as ``module:Qualname`` (the generated test imports it from there).
        event: Its subscription id, for a table store following one (``TableStore(event=...)``);
            ``None`` otherwise.
    """

    name: str
    cls: str
    event: str | None = None
