"""A root's state on disk: the rows, the cursor and the outbox, written behind the stream.

:class:`Persister` is what ``RootStore(persist=...)`` composes. On start
(:meth:`Persister.load`) it fills the stores from the file, before the first
connect, and gives the root the cursor to resume from. While the root runs it
follows the keyed views of the table stores' event names: each frame's changed
rows go into a :class:`~rxstore.persist.delta.Delta` (one dict store per change,
nothing encoded on the loop), and at most every ``interval`` seconds (or once
``batch_rows`` rows are gathered) one transaction writes the rows, the opted-in
domain states and the cursor they lead to, on a writer thread. One write is in
flight at a time; what arrives meanwhile coalesces into the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from reactivex import Observable
from reactivex.abc import DisposableBase
from reactivex.disposable import CompositeDisposable

from rxstore.operators import Frame, named
from rxstore.persist.batch import Batch, Outgoing
from rxstore.persist.codec import PersistCodec, type_fingerprint
from rxstore.persist.delta import Delta
from rxstore.persist.file import Loaded, StateFile
from rxstore.persist.metrics import PersistMetrics
from rxstore.persist.options import Persist
from rxstore.protocol.errors import PersistError, RxStoreError, sqlite_storage_fault
from rxstore.protocol.events import Event, EventKind, Snapshot
from rxstore.protocol.frames import ChangeFrame
from rxstore.stores.domain import DomainStore, RealtimeStore
from rxstore.stores.status import SyncState
from rxstore.stores.table import TableStore

__all__ = ["Persister", "Position"]

log = logging.getLogger("rxstore.persist")


class Position(Protocol):
    """Where the root is in the change log (the router): written with the rows, restored at start."""

    cursor: int | None
    cursor_event: str | None
    cursor_ts: float | None
    epoch: str | None


class Persister:
    """Writes a root's state to its state file and fills the stores from it at start.

    Args:
        options: The file and its bounds.
        stores: The root's stores (read when attached and when loading).
        position: The router: its cursor, the cursor's event name and ``ts``, and the epoch.
        report: Where problems go (the root's ``errors``), each also logged once.

    Raises:
        PersistError: ``locked``: another process has the file open.
    """

    def __init__(
        self,
        options: Persist,
        *,
        stores: Callable[[], Sequence[RealtimeStore]],
        position: Position,
        report: Callable[[RxStoreError], None],
    ) -> None:
        self.options = options
        self.metrics = PersistMetrics()
        self.failed: PersistError | None = None
        """Why nothing more is written (a foreign file, a failed write, the size bound); ``None``: writing."""
        self.restored = False
        """Whether the stores were filled from the file at start."""
        self._stores = stores
        self._position = position
        self._report = report
        self._file: StateFile | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tables: dict[str, TableStore[Any]] = {}
        self._specs: dict[str, dict[str, Any]] = {}
        """What each subscription's rows on disk are rows of (recorded when its snapshot came)."""
        self._codecs: dict[str, tuple[DomainStore[Any], PersistCodec]] = {}
        self._dirty_states: set[str] = set()
        self._delta = Delta({})
        self._outbox_added: list[Outgoing] = []
        self._outbox_removed: list[str] = []
        self._gen = 0
        """Bumped by everything that is to be written; a write covers the generation it was taken at."""
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[tuple[int, float]] | None = None
        self._retry: tuple[int, Batch] | None = None
        """A write the disk did not take (full, locked, read-only): written again first, after a pause."""
        self._retry_delay = 0.0
        self._retry_timer: asyncio.TimerHandle | None = None
        self._loading: asyncio.Task[list[Outgoing]] | None = None
        self.open()

    # -- the file --------------------------------------------------------------

    def open(self) -> None:
        """Open the file (again, after :meth:`close`); a foreign one turns persistence off, with one warning.

        Raises:
            PersistError: ``locked``: another process has the file open.
        """
        if self._file is not None or self.failed is not None:
            return
        try:
            self._file = StateFile(self.options.path)
        except PersistError as exc:
            if exc.reason == "locked":
                raise
            self._fail(exc)
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="rxstore-persist")

    async def close(self) -> None:
        """Write what is gathered, then close the file (its lock released)."""
        if self._file is None:
            return
        if self.failed is None and self._retry is None:  # a disk that takes no writes: the last state stays
            await self.persisted()
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        file, executor = self._file, self._executor
        self._file = self._executor = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert executor is not None
        await asyncio.get_running_loop().run_in_executor(executor, file.close)
        executor.shutdown(wait=True)

    # -- loading ---------------------------------------------------------------

    async def load(self) -> list[Outgoing]:
        """Fill the stores from the file, once; return the mutations to send again, in order."""
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())
        return await asyncio.shield(self._loading)

    async def _load(self) -> list[Outgoing]:
        file, executor = self._file, self._executor
        if file is None or executor is None:
            return []
        started = time.perf_counter()
        loaded = await asyncio.get_running_loop().run_in_executor(executor, file.load)
        if file.problem is not None:  # set aside or emptied at open or while read: told once, here
            self._tell(file.problem)
            file.problem = None
        tables = self._table_stores()
        why = self._mismatch(loaded, tables)
        if why is None:
            self._restore(loaded, tables)
        elif loaded.cursor is not None or loaded.subs or loaded.states:
            self._tell(PersistError("changed", f"{self.options.path}: {why}: starting from a fresh snapshot"))
            await asyncio.get_running_loop().run_in_executor(executor, file.discard)
        self.metrics.load_seconds = time.perf_counter() - started
        return loaded.outbox

    def _table_stores(self) -> dict[str, list[TableStore[Any]]]:
        tables: dict[str, list[TableStore[Any]]] = {}
        for store in self._stores():
            if isinstance(store, TableStore) and not store.foreign:
                tables.setdefault(store.event, []).append(store)
        return tables

    def _mismatch(self, loaded: Loaded, tables: dict[str, list[TableStore[Any]]]) -> str | None:
        """Why the file's rows cannot be shown as the stores' (``None``: they can)."""
        if loaded.cursor is None and (tables or not loaded.states):
            return "no cursor"
        if set(loaded.subs) != set(tables):
            return f"it holds {sorted(loaded.subs)}, the stores follow {sorted(tables)}"
        for sub, stores in tables.items():
            spec, seq = loaded.subs[sub]
            if seq is None or _without_record(spec) != _without_record(_spec(stores[0])):
                return f"{sub!r} followed another subset or key"
            if spec.get("record") != type_fingerprint(stores[0].record_type):
                to_record = stores[0].to_record
                try:
                    for row in loaded.rows.get(sub, ()):
                        to_record(row)
                except Exception as exc:
                    return f"{sub!r}: a row does not fit {stores[0].record_type!r} any more ({exc})"
        return None

    def _restore(self, loaded: Loaded, tables: dict[str, list[TableStore[Any]]]) -> None:
        """Show the file's state: domain states, then each table's rows as a snapshot at its seq."""
        stores = self._stores()
        for store in stores:
            codec = _codec_of(store)
            if codec is not None and isinstance(store, DomainStore) and store.name in loaded.states:
                try:
                    store.restore(codec.decode(loaded.states[store.name]))
                except Exception as exc:  # a state that no longer decodes: the store starts afresh
                    log.warning("[%s] its state on disk does not decode (%s): initial state", store.name, exc)
        rows = 0
        for sub, table_stores in tables.items():
            spec, seq = loaded.subs[sub]
            assert seq is not None
            records = tuple(loaded.rows.get(sub, ()))
            rows += len(records)
            event = Event(sub, Snapshot(table_stores[0].table, seq, records), EventKind.SNAPSHOT, seq)
            for store in stores:
                if isinstance(store, DomainStore) and sub in store.accepts:
                    store.apply([event])
            for table in table_stores:
                table.set_sync(SyncState.STALE, from_disk=True)
            self._specs[sub] = spec
        position = self._position
        position.cursor, position.cursor_event, position.cursor_ts, position.epoch = (
            loaded.cursor,
            loaded.cursor_event,
            loaded.cursor_ts,
            loaded.epoch,
        )
        self.metrics.loaded_rows = rows
        self.restored = True

    # -- following the stream --------------------------------------------------

    def attach(self, events: Observable[Event]) -> DisposableBase:
        """Follow the table stores' frames and the opted-in domain stores' states on ``events``."""
        tables = {sub: stores[0] for sub, stores in self._table_stores().items()}
        self._tables = tables
        self._delta.keys = {sub: store.primary_key for sub, store in tables.items()}
        subscriptions = CompositeDisposable()
        if tables:
            subscriptions.add(events.pipe(named(*tables)).subscribe(self._on_frame))
        for store in self._stores():
            codec = _codec_of(store)
            if codec is not None and isinstance(store, DomainStore) and not isinstance(store, TableStore):
                self._codecs[store.name] = (store, codec)
                subscriptions.add(store.state.subscribe(self._state_changed(store.name)))
        return subscriptions

    def _on_frame(self, frame: Frame) -> None:
        if self._stopped:
            return
        try:
            self._delta.add(frame)
        except PersistError as exc:  # a row that is not JSON (built by hand): nothing more is written
            self._fail(PersistError(exc.reason, f"{self.options.path}: {exc}; not writing any more"))
            return
        if type(frame) is not ChangeFrame:
            for event in frame:
                if event.kind is EventKind.SNAPSHOT and event.name in self._tables:
                    self._specs[event.name] = _spec(self._tables[event.name])
        self._gen += 1
        self._changed()

    def _state_changed(self, name: str) -> Callable[[Any], None]:
        return lambda _: self._on_state(name)

    def _on_state(self, name: str) -> None:
        if self._stopped:
            return
        self._dirty_states.add(name)
        self._gen += 1
        self._changed()

    # -- the outbox ------------------------------------------------------------

    def journal_add(self, entry: Outgoing) -> asyncio.Future[None]:
        """Write an accepted mutation now; the future is done once it is on disk."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._stopped:
            if self.failed is not None:
                future.set_exception(self.failed)
                future.add_done_callback(_seen)
            else:
                future.set_result(None)
            return future
        self._outbox_added.append(entry)
        self._gen += 1
        self._waiters.append((self._gen, future))
        self._flush()
        return future

    def journal_remove(self, mutation: str) -> None:
        """Forget a settled mutation (written with the next transaction)."""
        if self._stopped:
            return
        self._outbox_removed.append(mutation)
        self._gen += 1
        self._changed()

    # -- writing ---------------------------------------------------------------

    @property
    def _stopped(self) -> bool:
        """Whether nothing more is gathered: no file open, or writing stopped (:attr:`failed`)."""
        return self._file is None or self.failed is not None

    async def persisted(self) -> None:
        """Return once everything gathered so far is on disk (at once when nothing waits).

        Raises:
            PersistError: Writing stopped (a failed write, the size bound, a foreign file).
        """
        if self.failed is not None:
            raise self.failed
        if self._written >= self._gen or self._file is None:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._gen, future))
        self._flush()
        await future

    def _changed(self) -> None:
        """Something was gathered: write it within ``interval``, or now past ``batch_rows``."""
        if self._writing is not None:
            return  # the write under way starts the next one when it ends
        if len(self._delta) >= self.options.batch_rows:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.options.interval, self._flush)

    def _flush(self) -> None:
        """Start a write of everything gathered, unless one is under way."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        file, executor = self._file, self._executor
        if self._writing is not None or file is None or executor is None or self._written >= self._gen:
            return
        if self.failed is not None:  # writing stopped: the file keeps its last consistent state
            return
        if self._retry is not None:  # the write the disk refused goes first, once its pause is over
            if self._retry_timer is not None:
                return
            gen, batch = self._retry
            self._retry = None
        else:
            gen, batch = self._gen, self._take()
        self._writing = asyncio.get_running_loop().run_in_executor(executor, _timed, file, batch)
        self._writing.add_done_callback(lambda done: self._written_up_to(gen, batch, done))

    def _take(self) -> Batch:
        cleared, rows, changes = self._delta.take()
        position = self._position
        subs = {
            sub: (self._specs[sub], store.confirmed.seq)
            for sub, store in self._tables.items()
            if sub in self._specs
        }
        states = {name: self._encode(name) for name in self._dirty_states}
        self._dirty_states = set()
        added, removed = tuple(self._outbox_added), tuple(self._outbox_removed)
        self._outbox_added, self._outbox_removed = [], []
        return Batch(
            cleared=cleared,
            rows=rows,
            subs=subs,
            states={name: state for name, state in states.items() if state is not _UNENCODED},
            cursor_known=True,
            cursor=position.cursor,
            cursor_event=position.cursor_event,
            cursor_ts=position.cursor_ts,
            epoch=position.epoch,
            outbox_added=added,
            outbox_removed=removed,
            changes=changes,
        )

    def _encode(self, name: str) -> Any:
        store, codec = self._codecs[name]
        try:
            return codec.encode(store.value)
        except Exception as exc:
            log.warning("[%s] its state does not encode (%s): not persisted", name, exc)
            return _UNENCODED

    def _written_up_to(self, gen: int, batch: Batch, done: asyncio.Future[tuple[int, float]]) -> None:
        self._writing = None
        metrics = self.metrics
        try:
            size, seconds = done.result()
        except Exception as exc:
            metrics.failures += 1
            fault = sqlite_storage_fault(exc)
            if fault is not None:  # the disk's state, not the batch's: write it again later
                self._again(gen, batch, fault)
                return
            self._fail(
                PersistError(
                    "write_failed", f"{self.options.path}: a write failed ({exc}); not writing any more"
                )
            )
            return
        if self._retry_delay:
            log.warning("[RootStore] %s: writing again", self.options.path)
            self._retry_delay = 0.0
        metrics.writes += 1
        metrics.changes += batch.changes
        metrics.rows_written += batch.row_count
        metrics.write_seconds += seconds
        metrics.write_seconds_max = max(metrics.write_seconds_max, seconds)
        metrics.bytes = size
        self._written = gen
        waiting = self._waiters
        self._waiters = [(g, f) for g, f in waiting if g > gen]
        for g, future in waiting:
            if g <= gen and not future.done():
                future.set_result(None)
        if size > self.options.max_bytes:
            message = (
                f"{self.options.path} holds {size} bytes, over max_bytes={self.options.max_bytes}: "
                "not writing any more"
            )
            self._fail(PersistError("too_big", message))
            return
        metrics.pending_rows = len(self._delta)
        if self._waiters:
            self._flush()
        elif self._written < self._gen:
            self._changed()

    def _again(self, gen: int, batch: Batch, fault: str) -> None:
        """Keep a batch the disk refused and write it again after a pause (doubling, at most 30 s).

        The file keeps its last consistent state meanwhile; what changes goes on gathering,
        and whoever awaits :meth:`persisted` (or a mutation's ``stored``) waits until it is written.
        """
        first = not self._retry_delay
        self._retry = (gen, batch)
        self._retry_delay = min(max(RETRY_FIRST, 2 * self._retry_delay), RETRY_MAX)
        if first:
            self._tell(
                PersistError(
                    "write_delayed",
                    f"{self.options.path}: the disk takes no writes now ({fault}); "
                    f"trying again every {RETRY_FIRST:g}-{RETRY_MAX:g} s, the file keeps its last state",
                )
            )

        def retry() -> None:
            self._retry_timer = None
            self._flush()

        self._retry_timer = asyncio.get_running_loop().call_later(self._retry_delay, retry)

    def _fail(self, error: PersistError) -> None:
        """Stop writing (the file keeps its last consistent state); fail whoever waits for a write."""
        self.failed = error
        self._tell(error)
        waiting, self._waiters = self._waiters, []
        for _, future in waiting:
            if not future.done():
                future.set_exception(error)
                future.add_done_callback(_seen)

    def _tell(self, error: PersistError) -> None:
        log.warning("[RootStore] %s", error)
        self._report(error)


RETRY_FIRST = 0.5
"""Seconds before a write the disk refused is tried again; the pause doubles up to :data:`RETRY_MAX`."""
RETRY_MAX = 30.0

_UNENCODED = object()


def _timed(file: StateFile, batch: Batch) -> tuple[int, float]:
    started = time.perf_counter()
    size = file.write(batch)
    return size, time.perf_counter() - started


def _spec(store: TableStore[Any]) -> dict[str, Any]:
    """What a subscription's rows are rows of: its subset, its key and its record type."""
    spec = {
        "subset": store.subset.to_wire(store.event),
        "key": store.primary_key,
        "record": type_fingerprint(store.record_type),
    }
    read_back: dict[str, Any] = json.loads(json.dumps(spec))
    return read_back  # as it reads back from the file (tuples are lists there)


def _without_record(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "record"}


def _codec_of(store: RealtimeStore) -> PersistCodec | None:
    codec = getattr(store, "persist_codec", None)
    return None if codec is None or isinstance(store, TableStore) else codec


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
