"""A recorded session replayed through stores in virtual time, each state checked: :class:`Replay`.

``rxstore replay FILE`` writes a test that does this; a test may do it too::

    Replay.load("session.jsonl", stores=[LikeStore(), PostStore()]).check()

The frames go through a real :class:`~rxstore.client.root.RootStore`'s router (on a
:class:`~rxstore.testing.VirtualLink` that never connects), each at its recorded time on a
``TestScheduler``'s clock, and the stores publish their states as they would have; each is
compared by value (:func:`~rxstore.client.recorder.plain.plain`) with the recorded one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reactivex.abc import DisposableBase

from rxstore.client.recorder import FrameEntry, LinkEntry, Recording, StateEntry, StoreEntry, Timeline
from rxstore.client.recorder.plain import difference, plain, unreplayable
from rxstore.client.root import RootStore
from rxstore.protocol.errors import RecordingError, ReplayMismatch, RxStoreError
from rxstore.stores.domain import DomainStore
from rxstore.testing.link import VirtualLink
from rxstore.testing.marbles import MarbleTest

__all__ = ["Replay", "ReplayedState", "check_replayable"]

BOUNDS = ("max_frames", "max_bytes", "max_seconds")
"""How a recording that stopped at a bound ended: the states of its last frame may be cut short."""

ReplayedState = tuple[int | None, Any]
"""A state a store published in the replay: the frame that caused it (``None``: the first), the state."""


class Replay:
    """Replays ``recording``'s frames through ``stores`` in virtual time; :meth:`check` compares the states.

    Args:
        recording: The session (``Recording.load(path)``).
        stores: New stores of the recorded classes, in the recording's order (one per
            recorded store); a subclass or a patched ``reduce`` is replayed as it is.

    Raises:
        RecordingError: The stores do not match the recording's (``no_store``), a recorded
            state is not comparable by value (``unreplayable``), or one was published
            outside any frame (``local_state``): each names the store and the state.

    Example:
        ``replay = Replay.load("session.jsonl", stores=[LikeStore()]).run()``, then
        ``replay.check()`` (a test), ``replay.seek(12)`` (every store as after frame 12) or
        ``t = replay.timeline("LikeStore"); t.next(); t.prev()`` (one store, step by step).
    """

    def __init__(self, recording: Recording, stores: Sequence[DomainStore[Any]]) -> None:
        self.recording = recording
        self._stores = _matched(recording, stores)
        check_replayable(recording)
        self._replayed: dict[str, list[ReplayedState]] = {name: [] for name in self._stores}
        self.errors: list[RxStoreError] = []
        """What the replay's root reported (a reducer that raised, a bad payload)."""
        self._ran = False

    @classmethod
    def load(cls, path: str | os.PathLike[str], stores: Sequence[DomainStore[Any]]) -> Replay:
        """The replay of the recording file at ``path``."""
        return cls(Recording.load(path), stores)

    @classmethod
    def loads(cls, text: str, stores: Sequence[DomainStore[Any]]) -> Replay:
        """The replay of a recording given as the text of its file."""
        return cls(Recording.loads(text), stores)

    @property
    def stores(self) -> Mapping[str, DomainStore[Any]]:
        """The stores, by their recorded names."""
        return dict(self._stores)

    # -- replaying ------------------------------------------------------------------

    def run(self) -> Replay:
        """Replay every frame at its recorded time (once; again: nothing happens); return the replay."""
        if self._ran:
            return self
        self._ran = True
        m = MarbleTest()
        root = RootStore("virtual://replay", stores=list(self._stores.values()), transport=VirtualLink())
        root.cursor = self.recording.cursor
        root.errors.subscribe(self.errors.append)
        root.setup_domain_event_handlers()
        frame: list[int | None] = [None]
        watching = [
            store.state.subscribe(_noting(self._replayed[name], frame))
            for name, store in self._stores.items()
        ]
        for time, group in itertools.groupby(self.recording.entries, key=lambda entry: entry.time):
            actions = [_action(entry, root, frame) for entry in group]
            m.scheduler.schedule_absolute(time, _run_all([a for a in actions if a is not None], m))
        try:
            m.run()
        finally:
            _dispose(watching)
            m.loop.close()
        return self

    def states(self, store: str) -> tuple[ReplayedState, ...]:
        """The states ``store`` published in the replay, each with the frame that caused it."""
        self.run()
        return tuple(self._replayed[self._name(store)])

    def check(self) -> None:
        """Replay, and compare each store's states with the recorded ones, by value.

        Raises:
            ReplayMismatch: A store published another state than recorded, one fewer or
                one more; of those, the one the earliest frame caused is named: the
                store, the state's number, the frame, and where the values differ.
        """
        self.run()
        found = [m for m in (self._mismatch(name) for name in self._stores) if m is not None]
        if found:
            raise min(found, key=lambda mismatch: -1 if mismatch.frame is None else mismatch.frame)

    # -- time travel ------------------------------------------------------------------

    def seek(self, frame: int | None) -> None:
        """Put every store in the state it held once frame ``frame`` was handled (``None``: at the start).

        The stores emit it, as on ``restore()``: views bound to them show that moment.
        """
        self.run()
        for name, store in self._stores.items():
            held = [
                state
                for at, state in self._replayed[name]
                if at is None or (frame is not None and at <= frame)
            ]
            store.restore(held[-1])

    def timeline(self, store: str) -> Timeline[Any]:
        """Step ``store`` through its replayed states: ``next()``, ``prev()``, ``at(i)`` restore it there."""
        name = self._name(store)
        states = [state for _, state in self.states(name)]
        return Timeline(states, on_move=self._stores[name].restore)

    # -- the comparison -----------------------------------------------------------------

    def _mismatch(self, name: str) -> ReplayMismatch | None:
        recorded = self.recording.states(name)
        replayed = self._replayed[name]
        for i in range(max(len(recorded), len(replayed))):
            if i >= len(recorded):
                if self.recording.end in BOUNDS:
                    return None  # the recording stopped at a bound: what follows was not kept
                at, state = replayed[i]
                return self._fail(
                    name, i, at, f"the replay published it, the recording has no such state: {plain(state)}"
                )
            entry = recorded[i]
            if i >= len(replayed):
                return self._fail(name, i, entry.after, "recorded, but the replay did not publish it")
            at, state = replayed[i]
            if at != entry.after:
                told = f"recorded after frame {entry.after}, replayed after frame {at}"
                return self._fail(name, i, entry.after, told)
            differs = difference(entry.value, plain(state))
            if differs is not None:
                return self._fail(name, i, entry.after, f"differs from the recording: {differs}")
        return None

    def _fail(self, name: str, state: int, frame: int | None, what: str) -> ReplayMismatch:
        store = self._stores[name]
        where = "when the recording began" if frame is None else f"after {_frame_told(self.recording, frame)}"
        message = f"{type(store).__name__} {name!r}: state {state} ({where}) {what}"
        if state == 0:
            message += " (a recording replays from the stores' initial states: begin it before connecting)"
        if self.errors:
            message += f"; the replay reported {len(self.errors)} error(s), the first: {self.errors[0]}"
        return ReplayMismatch(name, state, frame, message)

    def _name(self, store: str) -> str:
        if store not in self._stores:
            raise KeyError(f"no store {store!r} in the replay: it has {list(self._stores)}")
        return store


def _matched(recording: Recording, stores: Sequence[DomainStore[Any]]) -> dict[str, DomainStore[Any]]:
    """The stores by recorded name, matched in order."""
    recorded = recording.stores
    if len(stores) != len(recorded):
        names = [_constructor(s) for s in recorded]
        raise RecordingError(
            "no_store",
            f"the recording has {len(recorded)} store(s), {names}; the replay was given {len(stores)}",
        )
    return {entry.name: store for entry, store in zip(recorded, stores, strict=True)}


def check_replayable(recording: Recording) -> None:
    """Refuse a recording a replay cannot check: a state not comparable by value, or not made by a frame.

    Raises:
        RecordingError: ``unreplayable`` or ``local_state``, naming the store and the state.
    """
    counts: dict[str, int] = {}
    for entry in recording.entries:
        if type(entry) is not StateEntry:
            continue
        i = counts[entry.store] = counts.get(entry.store, -1) + 1
        where = unreplayable(entry.value)
        if where is not None:
            raise RecordingError(
                "unreplayable",
                f"{entry.store}: state {i} cannot be replayed: {where}, which rxstore cannot compare "
                "by value (attrs classes, mappings, sequences, sets, enums, dates, numbers, TableState); "
                "record without this store: root.record(stores=[...])",
            )
        if entry.after is None and not entry.initial:
            raise RecordingError(
                "local_state",
                f"{entry.store}: state {i} was published outside any frame (an optimistic mutation, reset(), "
                "restore() or apply()): a replay of the frames cannot make it; record a session without them "
                "or without this store: root.record(stores=[...])",
            )


def _action(entry: Any, root: RootStore, frame: list[int | None]) -> Callable[[], None] | None:
    if type(entry) is FrameEntry:

        def receive() -> None:
            frame[0] = entry.index
            try:
                root.router.on_frame(entry.name, entry.data)
            finally:
                frame[0] = None

        return receive
    if type(entry) is LinkEntry and entry.status == "up":
        return root.router.link_up
    return None


def _noting(seen: list[ReplayedState], frame: list[int | None]) -> Callable[[Any], None]:
    """A state observer: each state noted with the frame being handled."""
    return lambda state: seen.append((frame[0], state))


def _run_all(actions: list[Callable[[], None]], m: MarbleTest) -> Callable[[Any, Any], None]:
    def scheduled(_scheduler: Any, _state: Any) -> None:
        for action in actions:
            action()
            m.loop.run_ready()

    return scheduled


def _dispose(subscriptions: list[DisposableBase]) -> None:
    for subscription in subscriptions:
        subscription.dispose()


def _frame_told(recording: Recording, index: int) -> str:
    for entry in recording.frames:
        if entry.index == index:
            return f"frame {index}, {entry.name} at {entry.time:.3f} s"
    return f"frame {index}"


def _constructor(store: StoreEntry) -> str:
    return store.cls.rpartition(":")[2]
