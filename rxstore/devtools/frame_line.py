"""One received frame as the inspector lists it: when, what, and a one-line summary."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from rxstore.protocol.events import BATCH, LIVE, PAGE, RESET, SNAPSHOT

__all__ = ["SUMMARY_CHARS", "FrameLine"]

SUMMARY_CHARS = 160
"""Longest summary; longer ones end with an ellipsis."""


@attrs.frozen
class FrameLine:
    """A frame's line in the inspector's list of the last frames.

    Attributes:
        at: Unix time it arrived.
        name: The Socket.IO event name (``rxstore:batch``, ``post_update``, ...).
        summary: What it carried, on one line: changes and seqs, a snapshot's rows, ...

    Example:
        >>> FrameLine.of(0.0, "rxstore:snapshot", {"event": "post_update", "seq": 7, "records": [{}]}).summary
        'post_update: 1 rows at seq 7'
        >>> FrameLine.of(0.0, "post_update", {"seq": 8, "op": "DELETE", "old": {"id": "p1"}}).summary
        'DELETE seq 8 {"id":"p1"}'
        >>> batch = {"events": [["post_update", {"seq": seq, "op": "INSERT"}] for seq in (9, 10)]}
        >>> FrameLine.of(0.0, "rxstore:batch", batch).summary
        '2 changes, seq 9-10: post_update INSERT x2'
    """

    at: float
    name: str
    summary: str

    @classmethod
    def of(cls, at: float, name: Any, data: Any) -> FrameLine:
        """Summarize a frame as the router received it (a batch may be decoded already)."""
        return cls(at, str(name), _clip(_summary(name, data)))


def _summary(name: Any, data: Any) -> str:
    if name == BATCH:
        return _batch(data)
    if not isinstance(data, Mapping):
        return _json(data)
    if name in (SNAPSHOT, PAGE):
        more = " (more follows)" if data.get("more") else ""
        records = data.get("records")
        count = len(records) if isinstance(records, Sequence) else "?"
        return f"{data.get('event') or data.get('topic')}: {count} rows at seq {data.get('seq')}{more}"
    if name == LIVE:
        return f"live at seq {data.get('seq')}, epoch {str(data.get('epoch'))[:8]}"
    if name == RESET:
        return f"reset: {data.get('reason')} (horizon {data.get('horizon')})"
    if "op" in data and "seq" in data:
        return _change(data)
    return _json(data)


def _batch(data: Any) -> str:
    entries = getattr(data, "events", None)  # a CheckedBatch, as the transport decodes it
    if entries is None and isinstance(data, Mapping):
        entries = data.get("events")
    changes = (
        [
            (str(entry[0]), entry[1])
            for entry in entries
            if isinstance(entry, Sequence) and len(entry) == 2 and isinstance(entry[1], Mapping)
        ]
        if isinstance(entries, Sequence)
        else []
    )
    if not changes:
        return _json(data)
    if len(changes) == 1:
        event, envelope = changes[0]
        return f"{event} {_change(envelope)}"
    counts: dict[tuple[str, Any], int] = {}
    for event, envelope in changes:
        counts[event, envelope.get("op")] = counts.get((event, envelope.get("op")), 0) + 1
    seqs = [envelope.get("seq") for _, envelope in changes]
    counted = ", ".join(f"{event} {op} x{count}" for (event, op), count in counts.items())
    span = f"{seqs[0]}" if seqs[0] == seqs[-1] else f"{seqs[0]}-{seqs[-1]}"  # one change, two subscriptions
    return f"{len(changes)} changes, seq {span}: {counted}"


def _change(envelope: Mapping[str, Any]) -> str:
    row = envelope.get("record") if envelope.get("record") is not None else envelope.get("old")
    return f"{envelope.get('op')} seq {envelope.get('seq')} {_json(row)}"


def _json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=repr)[: SUMMARY_CHARS + 1]
    except ValueError:
        return repr(value)[: SUMMARY_CHARS + 1]


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"
