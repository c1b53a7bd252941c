"""A recorded session: its frames, its stores' states and its link, saved as JSON lines.

The file format (version 1, see docs/devtools.md): one JSON object per line, the header first::

    {"rxstore": "recording", "version": 1, "began": "2026-12-07T11:20:31Z", "limits": {...},
     "stores": [{"name": "likes", "class": "app.stores:LikeStore", "event": null}], "cursor": null}
    {"link": "up", "t": 0.0012, "reason": "http://127.0.0.1:8080"}
    {"frame": 0, "t": 0.0031, "name": "rxstore:snapshot", "data": {...}}
    {"state": "likes", "t": 0.0032, "after": 0, "value": {...}}
    {"end": "stopped", "t": 4.52}

``t`` is seconds since the recording began (a monotonic clock); ``after`` is the index of
the frame that caused the state (``null``: the state held when the recording began, marked
``"initial": true``, or one published outside any frame); ``end`` says why it ended:
``stopped``, or the bound it reached (``max_frames``, ``max_bytes``, ``max_seconds``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import msgspec

from rxstore.client.recorder.frame_entry import FrameEntry
from rxstore.client.recorder.link_entry import LinkEntry
from rxstore.client.recorder.state_entry import StateEntry
from rxstore.client.recorder.store_entry import StoreEntry
from rxstore.client.recorder.timeline import Timeline
from rxstore.protocol.errors import RecordingError

__all__ = ["FORMAT_VERSION", "Entry", "Recording", "encode_line"]

FORMAT_VERSION = 1
"""The version of the file format this rxstore writes and reads."""

Entry = FrameEntry | StateEntry | LinkEntry
"""One line of a recording after its header."""

_encoder = msgspec.json.Encoder(enc_hook=lambda value: {"$unreplayable": type(value).__qualname__})


def encode_line(value: Any) -> bytes:
    """One line of a recording file: ``value`` as JSON, and a newline."""
    return _encoder.encode(value) + b"\n"


def entry_json(entry: Entry) -> dict[str, Any]:
    """The JSON object of one entry (see the module's docstring)."""
    if type(entry) is FrameEntry:
        return {"frame": entry.index, "t": entry.time, "name": entry.name, "data": entry.data}
    if type(entry) is StateEntry:
        line = {"state": entry.store, "t": entry.time, "after": entry.after, "value": entry.value}
        return {**line, "initial": True} if entry.initial else line
    assert type(entry) is LinkEntry
    return {"link": entry.status, "t": entry.time, "reason": entry.reason}


@attrs.frozen(kw_only=True)
class Recording:
    """A recorded session: what ``root.record()`` captured, or a file :meth:`load` read.

    Attributes:
        began: When the recording began (UTC, ISO 8601).
        stores: The stores whose states were recorded.
        entries: Frames, states and link changes, in the order they happened.
        end: Why it ended: ``stopped``, a bound (``max_frames``, ``max_bytes``,
            ``max_seconds``), or ``None`` while it goes on.
        limits: The bounds it ran under.
        cursor: The root's cursor when it began (``None``: before any change).

    Example:
        >>> rec = Recording.loads('{"rxstore": "recording", "version": 1, "stores": []}')
        >>> rec.frames, rec.end
        ((), None)
    """

    began: str = ""
    stores: tuple[StoreEntry, ...] = ()
    entries: tuple[Entry, ...] = ()
    end: str | None = None
    limits: Mapping[str, Any] = attrs.field(factory=dict)
    cursor: int | None = None

    @property
    def frames(self) -> tuple[FrameEntry, ...]:
        """The frames received, in order."""
        return tuple(e for e in self.entries if type(e) is FrameEntry)

    def states(self, store: str) -> tuple[StateEntry, ...]:
        """The states ``store`` published, in order (the first: the one it held when recording began).

        Raises:
            KeyError: No store of that name was recorded; names those that were.
        """
        self._store(store)
        return tuple(e for e in self.entries if type(e) is StateEntry and e.store == store)

    def timeline(self, store: str) -> Timeline[StateEntry]:
        """Step through ``store``'s recorded states: ``t.next().value``, ``t.prev()``, ``t.at(i)``.

        Raises:
            KeyError: No store of that name was recorded.
        """
        return Timeline(self.states(store))

    def _store(self, name: str) -> StoreEntry:
        for store in self.stores:
            if store.name == name:
                return store
        raise KeyError(f"no store {name!r} in the recording: it has {[s.name for s in self.stores]}")

    # -- the file ---------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        """The file's first line, as an object."""
        return {
            "rxstore": "recording",
            "version": FORMAT_VERSION,
            "began": self.began,
            "limits": dict(self.limits),
            "stores": [{"name": s.name, "class": s.cls, "event": s.event} for s in self.stores],
            "cursor": self.cursor,
        }

    def dumps(self) -> str:
        """The recording as the text of its file."""
        lines = [encode_line(self.header())]
        lines.extend(encode_line(entry_json(entry)) for entry in self.entries)
        if self.end is not None:
            last = self.entries[-1].time if self.entries else 0.0
            lines.append(encode_line({"end": self.end, "t": last}))
        return b"".join(lines).decode()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the recording to ``path`` (JSON lines, see docs/devtools.md); return the path."""
        target = Path(path)
        target.write_text(self.dumps(), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recording:
        """Read a recording file.

        Raises:
            RecordingError: Not a recording (``not_a_recording``), or another format version (``version``).
            OSError: It cannot be read.
        """
        return cls.loads(Path(path).read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def loads(cls, text: str, *, source: str = "recording") -> Recording:
        """Read a recording from the text of its file (``source`` names it in errors).

        Raises:
            RecordingError: Not a recording, or another format version.
        """
        return _parse(text.splitlines(), source)


def _parse(lines: Iterable[str], source: str) -> Recording:
    objects = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            objects.append(msgspec.json.decode(line))
        except msgspec.DecodeError as exc:
            raise RecordingError("not_a_recording", f"{source}: line {number} is not JSON ({exc})") from exc
    header = objects[0] if objects else None
    if type(header) is not dict or header.get("rxstore") != "recording":
        raise RecordingError(
            "not_a_recording",
            f'{source}: not an rxstore recording (its first line has no "rxstore": "recording")',
        )
    if header.get("version") != FORMAT_VERSION:
        raise RecordingError(
            "version",
            f"{source}: recording format {header.get('version')!r}; this rxstore reads {FORMAT_VERSION}",
        )
    entries: list[Entry] = []
    end = None
    try:
        for line in objects[1:]:
            if "end" in line:
                end = str(line["end"])
            else:
                entries.append(_entry(line))
        stores = tuple(StoreEntry(s["name"], s["class"], s.get("event")) for s in header.get("stores", ()))
    except (KeyError, TypeError) as exc:
        raise RecordingError("not_a_recording", f"{source}: a line lacks {exc} or is not an object") from exc
    return Recording(
        began=str(header.get("began", "")),
        stores=stores,
        entries=tuple(entries),
        end=end,
        limits=header.get("limits") or {},
        cursor=header.get("cursor"),
    )


def _entry(line: dict[str, Any]) -> Entry:
    if "frame" in line:
        return FrameEntry(line["frame"], line["t"], line["name"], line["data"])
    if "state" in line:
        return StateEntry(line["state"], line["t"], line["after"], line["value"], bool(line.get("initial")))
    return LinkEntry(line["t"], line["link"], line.get("reason"))
