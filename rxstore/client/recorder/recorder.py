"""The recorder: every frame a root receives and every state its stores publish, bounded."""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
import msgspec
from reactivex import Observable
from reactivex.abc import DisposableBase

from rxstore.client.connection import ConnectionState, ConnectionStatus
from rxstore.client.recorder.limits import RecordLimits
from rxstore.client.recorder.plain import plain
from rxstore.client.recorder.recording import Recording, encode_line
from rxstore.client.recorder.store_entry import StoreEntry
from rxstore.client.router import Router
from rxstore.stores.domain import DomainStore, RealtimeStore
from rxstore.stores.table import TableStore

__all__ = ["Recorder"]

log = logging.getLogger("rxstore.recorder")


class Recorder:
    """Records a root's session while it goes on: ``with root.record() as rec: ...; rec.save(path)``.

    Each frame is kept as the transport delivered it (its event name, its payload as
    JSON, the time), before the router handles it; each state a store publishes is kept
    as :func:`~rxstore.client.recorder.plain.plain` makes it, with the frame that caused
    it. Both are encoded when they happen, so the recording holds what was, and its size
    is known: the first bound of ``limits`` reached stops it (it says so once, a warning
    on the ``rxstore.recorder`` logger). Made by :meth:`RootStore.record
    <rxstore.client.root.RootStore.record>`, already recording.

    Args:
        router: Where frames enter (its ``recorder`` is set while recording).
        stores: The stores whose states to record (any other ``RealtimeStore`` is left out).
        connection: The root's connection states (``up`` and ``lost`` are recorded).
        limits: The bounds.
        cursor: The root's cursor now (kept in the header).
        clock: Monotonic seconds.

    Example:
        ``with root.record(max_frames=10_000) as rec: await work()``, then
        ``rec.save("session.jsonl")`` and ``rxstore replay session.jsonl``; ``rec.end`` says
        why it ended, ``rec.size`` how much it holds.
    """

    def __init__(
        self,
        router: Router,
        stores: Sequence[RealtimeStore],
        connection: Observable[ConnectionState],
        *,
        limits: RecordLimits,
        cursor: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if router.recorder is not None:
            raise RuntimeError("this root is recording already: stop that recording first")
        self.limits = limits
        self._router = router
        self._clock = clock
        self._began = clock()
        self._lines: list[bytes] = []
        self._bytes = 0
        self._frames = 0
        self._frame: int | None = None
        """The index of the frame being handled, while it is."""
        self._end: str | None = None
        domain = [store for store in stores if isinstance(store, DomainStore)]
        self._stores = _store_entries(domain)
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self._header = Recording(
            began=now, stores=self._stores, limits=attrs.asdict(limits), cursor=cursor
        ).header()
        self._bytes = len(encode_line(self._header))
        router.recorder = self
        self._subscriptions: list[DisposableBase] = [connection.subscribe(self._link)]
        for store, entry in zip(domain, self._stores, strict=True):
            self._initial = True
            self._subscriptions.append(store.state.subscribe(self._states_of(entry.name)))
        self._initial = False

    # -- what the root asks -------------------------------------------------------

    @property
    def recording(self) -> Recording:
        """What was recorded so far (all of it, once stopped)."""
        lines = [encode_line(self._header), *self._lines]
        if self._end is not None:
            lines.append(encode_line({"end": self._end, "t": self._now()}))
        return Recording.loads(b"".join(lines).decode(), source="the recording")

    @property
    def end(self) -> str | None:
        """Why it ended: ``stopped``, or a bound (``max_frames``, ...); ``None`` while recording."""
        return self._end

    @property
    def size(self) -> tuple[int, int]:
        """Frames and bytes recorded so far."""
        return self._frames, self._bytes

    def stop(self) -> Recording:
        """Stop recording (again: nothing happens) and return the recording."""
        self._stop("stopped")
        return self.recording

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write what was recorded so far to ``path`` (see :meth:`Recording.save`)."""
        return self.recording.save(path)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what the router calls (the frame path, while recording) ----------------------

    def frame(self, name: str, data: Any) -> None:
        """A frame arrives (the router calls this first, then handles it)."""
        if self._end is not None:
            return
        if self._frames >= self.limits.max_frames:
            self._stop("max_frames")
            return
        line = {"frame": self._frames, "t": self._now(), "name": name, "data": data}
        if self._add(line):
            self._frame = self._frames
            self._frames += 1

    def frame_done(self) -> bool:
        """The frame was handled; whether recording goes on."""
        self._frame = None
        return self._end is None

    # -- the rest -----------------------------------------------------------------

    def _state(self, store: str, state: Any) -> None:
        if self._end is not None:
            return
        line = {"state": store, "t": self._now(), "after": self._frame, "value": plain(state)}
        if self._initial:
            line["initial"] = True
        self._add(line)

    def _states_of(self, store: str) -> Callable[[Any], None]:
        return lambda state: self._state(store, state)

    def _link(self, state: ConnectionState) -> None:
        if self._end is not None:
            return
        if state.status is ConnectionStatus.CONNECTED:
            self._add({"link": "up", "t": self._now(), "reason": state.url})
        elif state.status in (ConnectionStatus.RECONNECTING, ConnectionStatus.DISCONNECTED):
            self._add({"link": "lost", "t": self._now(), "reason": state.reason})

    def _add(self, line: dict[str, Any]) -> bool:
        """Keep ``line`` if the bounds allow; else stop."""
        if line["t"] > self.limits.max_seconds:
            self._stop("max_seconds")
            return False
        try:
            encoded = encode_line(line)
        except (msgspec.EncodeError, TypeError, OverflowError) as exc:
            kept = "value" if "value" in line else "data"
            encoded = encode_line({**line, kept: {"$unreplayable": f"{type(exc).__name__}: {exc}"}})
        if self._bytes + len(encoded) > self.limits.max_bytes:
            self._stop("max_bytes")
            return False
        self._bytes += len(encoded)
        self._lines.append(encoded)
        return True

    def _now(self) -> float:
        return round(self._clock() - self._began, 6)

    def _stop(self, reason: str) -> None:
        if self._end is not None:
            return
        self._end = reason
        if self._router.recorder is self:
            self._router.recorder = None
        for subscription in self._subscriptions:
            subscription.dispose()
        if reason != "stopped":
            bound = getattr(self.limits, reason)
            log.warning(
                "[RootStore] recording stopped at its bound %s=%s: %d frames, %d bytes kept",
                reason,
                bound,
                self._frames,
                self._bytes,
            )


def _store_entries(stores: Sequence[DomainStore[Any]]) -> tuple[StoreEntry, ...]:
    """Each store's entry; a name two stores share gets ``#2``, ``#3`` ... after the first."""
    seen: dict[str, int] = {}
    entries = []
    for store in stores:
        count = seen[store.name] = seen.get(store.name, 0) + 1
        name = store.name if count == 1 else f"{store.name}#{count}"
        cls = type(store)
        event = store.event if isinstance(store, TableStore) and store.event != type(store).event else None
        entries.append(StoreEntry(name, f"{cls.__module__}:{cls.__qualname__}", event))
    return tuple(entries)
