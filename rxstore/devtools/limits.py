"""The developers' tools' bounds and defaults, each defined once (the commands' flags default to them)."""

from __future__ import annotations

__all__ = ["FRAMES", "HISTORY", "INSPECT_INTERVAL", "ROWS", "TIMEOUT", "TOP_INTERVAL"]

FRAMES = 200
"""Frames the inspector keeps (``rxstore inspect --frames``); older ones are dropped."""
ROWS = 100
"""Rows of the highlighted table the inspector shows (``rxstore inspect --rows``); the rest are counted."""
HISTORY = 20
"""Connection states, failed attempts and errors the inspector keeps, the last of each."""
INSPECT_INTERVAL = 0.5
"""Seconds between two refreshes of the inspector's screen (``rxstore inspect --interval``)."""
TOP_INTERVAL = 1.0
"""Seconds between two reads of every node by ``rxstore top`` (``--interval``)."""
TIMEOUT = 2.0
"""Seconds one read of a node may take (``rxstore top --timeout``); past it, the node shows as down."""
