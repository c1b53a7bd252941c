"""Table stores: one table mirrored from change envelopes.

The state is a :class:`TableState`: an immutable map from primary key to
record (``immutables.Map``, a HAMT: O(log n) per change, no copy of the
table), plus the seq of the last change applied. Orderings are derived
lazily and memoized per state, never maintained per change.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import EllipsisType
from typing import Any, ClassVar, TypeVar, cast

import attrs
from reactivex import Observable
from reactivex.abc import SchedulerBase
from reactivex.subject import BehaviorSubject

from rxstore.operators import Frame
from rxstore.protocol.events import Event, Op, topic_event_name
from rxstore.protocol.frames import ChangeFrame
from rxstore.protocol.paging import widened
from rxstore.protocol.records import converter, structure_record
from rxstore.protocol.subsets import (
    Subset,
    WhereSpec,
    columns_of,
    parse_subscription,
    terms_of,
    window_of,
)
from rxstore.stores.domain import DomainStore
from rxstore.stores.folding.fold import reduce_envelopes, reduce_events
from rxstore.stores.folding.fold_spec import TableFold
from rxstore.stores.folding.foreign import FOREIGN_OPS
from rxstore.stores.live import table_live
from rxstore.stores.optimistic import PendingRows
from rxstore.stores.state import TableState, new_state
from rxstore.stores.status import SyncState, SyncStatus

__all__ = ["Parser", "TableState", "TableStore", "converter", "structure_record"]

R = TypeVar("R")

Parser = Callable[[Any], tuple[Op | str, Mapping[str, Any]] | None]
"""Payload of a server other than the rxstore gateway -> ``(op, row)``, or ``None`` to ignore it.

See the ``parse`` argument of :class:`TableStore`.
"""


class TableStore(DomainStore[TableState[R]]):
    """Mirrors one table (topic) from snapshots and INSERT/UPDATE/DELETE changes.

    Class attributes:
        table: The table / topic name, e.g. ``"posts"``.
        record_type: An attrs class rows are structured into with cattrs
            (``None`` keeps rows as dicts).
        primary_key: The row field that identifies a record (default ``"id"``).
        event: The socket event carrying this table's changes; defaults to
            :func:`~rxstore.protocol.events.topic_event_name` of ``table`` (``post_update``).
            An instance's ``event=`` overrides it: the id of its subscription.

    ``where=``, ``columns=`` or an own ``event=`` make it follow a *subscription*
    (id ``event``, see :mod:`rxstore.protocol.subsets`) instead of the whole topic;
    ``order_by=``, ``limit=`` and ``after=`` make it a *window* (the first ``limit``
    rows in that order, ``state.ordered()`` in it); :meth:`where` switches its
    :attr:`subset` at runtime.

    A change whose ``seq`` is not newer than the state's ``seq`` is skipped, so a
    change is applied exactly once even if it is delivered twice. A row that does
    not fit ``record_type`` is reported to ``errors`` with the bad field named,
    and so is a payload under ``event`` that is not a change envelope (a
    :class:`~rxstore.protocol.errors.ProtocolError` naming this store; other stores
    accepting ``event`` still get it).

    Any other Socket.IO server (one that emits, say, ``post_update`` with
    ``{"type": "created", "post": {...}}``) is followed through a ``parse``
    adapter: pass ``parse=`` or override :meth:`parse`. Such a *foreign* table
    has no seq: each payload is applied as it comes (INSERT and UPDATE put the
    row, DELETE removes its key), with no duplicate-by-seq filtering, no
    snapshot and no replay of what was missed while disconnected; its sync
    status is LIVE as soon as the link is up (``cursor`` stays ``None``).

    Example:
        >>> import attrs
        >>> @attrs.frozen
        ... class Post:
        ...     id: str
        ...     title: str
        >>> class PostStore(TableStore[Post]):
        ...     table = "posts"
        ...     record_type = Post
        >>> from rxstore.testing import change
        >>> posts = PostStore()
        >>> posts.apply([change("posts", 1, "INSERT", {"id": "p1", "title": "Hi"})])
        >>> posts.value.get("p1")
        Post(id='p1', title='Hi')

        The same table from a server that sends ``{type, post}``:

        >>> seed = PostStore(parse=lambda data: (data["type"], data["post"]))
        >>> seed.apply([Event("post_update", {"type": "created", "post": {"id": "p1", "title": "Hi"}})])
        >>> seed.apply([Event("post_update", {"type": "deleted", "post": {"id": "p1"}})])
        >>> len(seed.value), seed.value.seq, seed.foreign
        (0, None, True)
    """

    table: ClassVar[str] = ""
    record_type: ClassVar[type[Any] | None] = None
    primary_key: ClassVar[str] = "id"
    event: str = ""
    foreign_ops: ClassVar[Mapping[str, Op]] = FOREIGN_OPS
    """The op words a ``parse`` adapter may return (lower-cased before lookup), besides :class:`Op`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.reduce is not TableStore.reduce and cls.reduce_batch is TableStore.reduce_batch:
            # An overridden reduce sees every event: frames go event by event, snapshots and resets too.
            setattr(cls, "reduce_batch", TableStore._reduce_each)  # noqa: B010  (mypy: no method-assign)
        if cls.table:
            if not cls.event:
                cls.event = topic_event_name(cls.table)
            cls.accepts = (cls.event,)

    def __init__(
        self,
        *,
        name: str | None = None,
        parse: Parser | None = None,
        where: WhereSpec = None,
        columns: Iterable[str] | None = None,
        event: str | None = None,
        order_by: Any = None,
        limit: int | None = None,
        after: Sequence[Any] | None = None,
    ) -> None:
        """Create the store, empty.

        Args:
            name: Name in logs and errors; defaults to the class name.
            parse: Follow a server other than the rxstore gateway: turns each
                payload under ``event`` into ``(op, row)`` (or ``None`` to
                ignore it); see :meth:`parse`. Overrides an overridden ``parse``.
            where: Follow only the rows that match (see :func:`~rxstore.protocol.subsets.terms_of`).
            columns: Follow only these columns (the primary key is always sent).
            event: This store's subscription id (two stores of one table on one
                root need distinct ones); the class's ``event`` by default.
            order_by: A window's order: column names (ascending) or ``(column,
                "asc" | "desc")`` pairs; the primary key is the last tiebreaker.
            limit: A window's size: its first ``limit`` rows (1 to ``MAX_LIMIT``).
            after: A window's keyset: it starts after the row with these ``order_by``
                values and primary key (the last).

        Raises:
            SubsetError: ``where``, ``columns``, ``event`` or the window is not valid.
        """
        if not self.table:
            raise TypeError(f"{type(self).__name__} must set the class attribute `table`")
        if parse is None and type(self).parse is not TableStore.parse:
            parse = self.parse
        self._parse: Parser | None = parse
        self.own_records = type(self).to_record is TableStore.to_record
        """Whether rows become records by ``record_type`` alone (``to_record`` not overridden)."""
        subset = Subset(self.table, terms_of(where), columns_of(columns))
        self._followed = window_of(subset, order_by, limit, after)
        if event is not None or not self._subset.whole:
            if parse is not None:
                raise TypeError(f"{type(self).__name__}: a foreign table (parse=) cannot follow a subset")
            self.event = parse_subscription(self._subset.to_wire(event or self.event))[0]
            self.accepts = (self.event,)  # type: ignore[misc]  # an instance's id overrides the class's
        self._switch: Callable[[TableStore[Any], Subset], Awaitable[None]] | None = None
        """Set by the root it is attached to: switches the subscription (``rxstore.client.subscriptions``)."""
        self._more: Callable[[TableStore[Any], Subset], Awaitable[int]] | None = None
        """Set by the root it is attached to: widens the window (``rxstore:more``); the rows added."""
        super().__init__(name=name, initial=TableState())
        self._table_fold: TableFold[R] = TableFold(
            self.name,
            self.table,
            self.primary_key,
            self.record_type,
            self.own_records,
            self.to_record,
            self.report,
            self._report_error,
            parse,
            self.foreign_ops,
            _window(self._subset),
        )
        """What :mod:`~rxstore.stores.folding.fold` needs of this store to fold its frames."""
        self._confirmed: TableState[R] = self._state.value
        self._pending: PendingRows[R] = PendingRows()
        self._status: BehaviorSubject[SyncStatus] = BehaviorSubject(
            SyncStatus(SyncState.STALE, None, time.time())
        )

    # -- sync status -----------------------------------------------------------

    @property
    def status(self) -> Observable[SyncStatus]:
        """Live, replaying or stale (with cursor and lag); a new subscriber gets the current one.

        Example:
            ``posts.status.subscribe(lambda s: banner.show(s.state is SyncState.STALE))``
        """
        return self._status

    @property
    def sync(self) -> SyncStatus:
        """The current sync status, synchronously."""
        return self._status.value

    def when_live(
        self, timeout: float | None = 30.0, *, scheduler: SchedulerBase | None = None
    ) -> Observable[SyncStatus]:
        """Emit the sync status once this store is live (at once if it is), then complete.

        Live means the snapshot or replay is applied and changes arrive as they
        are committed. This is :meth:`live` as an observable: record it in a
        marble test (the timeout runs in virtual time), or subscribe in a UI.

        Args:
            timeout: Seconds to wait; ``None`` waits for ever.
            scheduler: Where the timeout runs; the subscriber's scheduler by default.

        Raises (on the observable):
            LiveTimeout: Not live within ``timeout``; names this store and its state.
        """
        return table_live(self, timeout, scheduler)

    async def live(self, timeout: float | None = 30.0) -> SyncStatus:
        """Wait until this store is live: its snapshot (or replay) applied, changes arriving.

        ``async with RootStore(...)`` returns once connected, while the tables
        are still replaying; await this (or ``root.live()``) before reading the
        whole table. Returns at once if the store is live.

        Raises:
            LiveTimeout: Not live within ``timeout`` seconds (also a ``TimeoutError``);
                the message names this store and its state (stale or replaying).

        Example:
            ``await posts.live(timeout=10); print(len(posts.value), "posts")``
        """
        return await self.when_live(timeout)

    def set_sync(self, state: SyncState, *, from_disk: bool | None = None) -> None:
        """Enter sync state ``state`` (called by the root store on link changes).

        A :attr:`foreign` table has nothing to replay: REPLAYING is LIVE for it.
        ``from_disk`` marks rows loaded from a state file; kept until LIVE by default.
        """
        if state is SyncState.REPLAYING and self._parse is not None:
            state = SyncState.LIVE
        current = self._status.value
        disk = (current.from_disk and state is not SyncState.LIVE) if from_disk is None else from_disk
        if current.state is not state or current.from_disk is not disk:
            self._status.on_next(SyncStatus(state, self._confirmed.seq, time.time(), disk))

    # -- the subset (live queries) ---------------------------------------------

    @property
    def subset(self) -> Subset:
        """The rows and columns this store follows (the whole table unless ``where``/``columns``/a window)."""
        return self._subset

    @property
    def _subset(self) -> Subset:
        return self._followed

    @_subset.setter
    def _subset(self, subset: Subset) -> None:
        """Follow ``subset`` (the root's subscriptions set it too): the fold keeps its window's order."""
        self._followed = subset
        if self._table_fold.window != _window(subset):
            self._table_fold = attrs.evolve(self._table_fold, window=_window(subset))

    @property
    def subscribed(self) -> bool:
        """Whether it follows a subscription (a subset, or its own ``event``), not a whole topic."""
        return not self._subset.whole or self.event != type(self).event

    async def where(
        self,
        spec: WhereSpec | EllipsisType = ...,
        *,
        columns: Iterable[str] | EllipsisType | None = ...,
        order_by: Any = ...,
        limit: int | EllipsisType | None = ...,
        after: Sequence[Any] | EllipsisType | None = ...,
    ) -> Subset:
        """Follow another subset of the table (a channel switch); what is not given is kept.

        ``order_by``, ``limit`` and ``after`` switch the window the same way
        (``await chat.where(limit=100)``; ``order_by=None, limit=None`` follows the
        whole subset again). An ``order_by`` given alone drops a kept ``after``
        (a keyset is of one order).

        On a connected root it returns after the gateway's acknowledgement (the new
        rows are in the store, no row of the old subset comes later); otherwise it
        sets :attr:`subset`, followed from the next connect. Example:
        ``await messages.where({"channel_id": "random"})``.

        Whatever happens, the store follows the subset :attr:`subset` names once
        this returns or raises: the new one, unless the gateway refused it. A link
        lost before the acknowledgement is no error (the new subset is subscribed
        from the next connect); docs/live_queries.md has each outcome.

        Raises:
            SubsetError: Not valid, or refused by the gateway (``exc.code``): the old subset stays.
            CallTimeout: No acknowledgement in time on a link that stayed up: the new
                subset stays and is sent again.
        """
        now = self._subset
        where = now.where if isinstance(spec, EllipsisType) else terms_of(spec)
        kept = now.columns if isinstance(columns, EllipsisType) else columns_of(columns)
        order = now.order_by if isinstance(order_by, EllipsisType) else order_by
        if isinstance(after, EllipsisType):
            after = now.after if isinstance(order_by, EllipsisType) else None
        subset = window_of(
            Subset(self.table, where, kept),
            order,
            now.limit if isinstance(limit, EllipsisType) else limit,
            after,
        )
        if subset != self._subset:
            if self._parse is not None:
                raise TypeError(f"{self.name}: a foreign table (parse=) cannot follow a subset")
            if self._switch is None:
                self._subset = subset
            else:
                await self._switch(self, subset)
        return self._subset

    async def more(self, n: int) -> int:
        """Widen the window by ``n`` rows ("load more"): the rows after its last, not those it has.

        On a connected root it returns once the rows are in the store, with how many
        rows the window grew by (fewer than ``n`` near the end of the subset, 0 past
        it); from then on :attr:`subset`'s ``limit`` is ``limit + n``, after a
        reconnect too. Otherwise the widened window is followed from the next
        connect and it returns 0. See docs/live_queries.md, "Paging".

        Raises:
            SubsetError: ``bad_request``: not a window with a ``limit``, ``n`` not a
                positive integer, or ``limit + n`` over ``MAX_LIMIT``; nothing changes.
            CallTimeout: No acknowledgement in time: the widened window is subscribed again.
        """
        subset = widened(self._subset, n)
        if self._more is None:
            self._subset = subset
            return 0
        return await self._more(self, subset)

    # -- optimistic mutations --------------------------------------------------

    @property
    def confirmed(self) -> TableState[R]:
        """The state as confirmed by the change log, without pending mutations."""
        return self._confirmed

    @property
    def pending(self) -> tuple[str, ...]:
        """Ids of the mutations shown optimistically, oldest first."""
        return self._pending.ids()

    @property
    def has_pending_writes(self) -> bool:
        """Whether the state shows optimistic rows the log has not confirmed yet (``hasPendingWrites``)."""
        return bool(self._pending.rows)

    @property
    def pending_writes(self) -> Observable[bool]:
        """:attr:`has_pending_writes` as an observable: the current value, then each change.

        It turns ``True`` with the state that first shows a pending row, and
        ``False`` once the state without any is published (the mutations'
        changes applied, or rolled back). Example:
        ``posts.pending_writes.subscribe(lambda p: saving.set_visible(p))``
        """
        return self._pending.flag

    def has_pending_write(self, key: Any) -> bool:
        """Whether the row ``key`` shows a write not yet confirmed by the log (a dict lookup).

        Example:
            ``style = "italic" if posts.has_pending_write(post.id) else "normal"``
        """
        return key in self._pending.keys

    def add_pending(self, mutation: str, rows: Mapping[Any, R | Mapping[str, Any] | None]) -> None:
        """Show ``rows`` (key -> record, or ``None`` for deleted) at once, on top of the confirmed state.

        They stay until the change written by ``mutation`` comes back through the
        log, or :meth:`drop_pending` rolls them back.
        """
        records: dict[Any, R | None] = {}
        for key, row in rows.items():
            records[key] = None if row is None else (self.to_record(row) if isinstance(row, Mapping) else row)
        self._pending.add(mutation, records)
        self._settle = self._settled
        self._publish()

    def drop_pending(self, mutation: str) -> None:
        """Stop showing the rows of ``mutation`` (settled or rolled back)."""
        if self._pending.drop(mutation):
            self._publish()

    def _seed(self) -> TableState[R]:
        """The scan folds the confirmed state; pending rows are laid on top when publishing."""
        return self._confirmed

    def _settled(self, state: TableState[R], after: TableState[R], frame: Frame) -> TableState[R]:
        """After a fold (while mutations are pending): settle those whose changes arrived."""
        settled = self._pending.settle(frame)
        if not self._pending:
            self._settle = None
        if settled and after is state:
            after = new_state(state.rows, state.seq, state.window)  # a new object: the scan publishes it
        return after

    def _publish_state(self, state: TableState[R]) -> None:
        """The scan's subscriber: the new confirmed state, published with the pending rows on top."""
        self._confirmed = state
        try:
            if self._pending.rows:
                self._publish()
            else:
                self._state.push(state)  # no pending rows to lay on top (_publish, inlined)
                if self._pending.flagged:  # the last ones just settled
                    self._pending.announce()
        except Exception as exc:  # a subscriber of the state raised
            self.report(self._frame[0] if self._frame else Event(self.name), exc)

    def reset(self) -> None:
        """Forget every row, pending mutations included; the scans continue from the empty table."""
        self._pending.clear()
        self._confirmed = TableState()
        self._publish()
        self._reseed()

    def _publish(self) -> None:
        confirmed = self._confirmed
        self._state.push(self._pending.overlay(confirmed) if self._pending else confirmed)
        self._pending.announce()

    def _initial_state(self) -> TableState[R]:
        return TableState()

    @property
    def seq(self) -> int | None:
        """Seq of the last change applied."""
        return self._confirmed.seq

    @property
    def foreign(self) -> bool:
        """Whether payloads go through :meth:`parse` (a server other than the rxstore gateway)."""
        return self._parse is not None

    def parse(self, payload: Any) -> tuple[Op | str, Mapping[str, Any]] | None:
        """Turn a payload of a server other than the rxstore gateway into ``(op, row)``.

        Override it (or pass ``parse=`` to the constructor) to follow such a
        server; the default is unused: the gateway sends change envelopes.
        ``op`` is an :class:`~rxstore.protocol.events.Op` or one of :attr:`foreign_ops`
        (``"created"``, ``"updated"``, ``"deleted"``, ...); ``row`` must carry
        the primary key (for DELETE, at least the key). Return ``None`` to
        ignore the payload. A payload it raises on, or returns anything else
        for, is reported to :attr:`errors` and skipped.

        Example:
            ``return data["type"], data["post"]`` for the seed's ``{type, post}``.
        """
        raise NotImplementedError(f"{type(self).__name__} follows the rxstore gateway; it parses nothing")

    def to_record(self, row: Mapping[str, Any]) -> R:
        """Turn a row into a record (``record_type`` via cattrs, or the dict itself)."""
        record_type = self.record_type
        if record_type is None:
            return cast(R, row)
        return structure_record(row, record_type)  # type: ignore[no-any-return]  # (cast() is a call)

    def reduce(self, state: TableState[R], event: Event) -> TableState[R]:
        """Apply one event: a snapshot, a change, a reset (or a foreign server's payload).

        Override it to handle a change your own way (the seed's
        ``handleRealtimePostUpdate``): every event then goes through your
        ``reduce``, one at a time, and ``super().reduce(state, event)`` applies it
        as the store would. Without an override, a frame of changes folds into
        the rows in one pass (:meth:`reduce_batch`).
        """
        return TableStore.reduce_batch(self, state, (event,))

    def reduce_batch(self, state: TableState[R], events: Sequence[Event]) -> TableState[R]:
        """Apply a frame in one pass over one map mutation (or event by event through your ``reduce``)."""
        if type(events) is ChangeFrame and self._parse is None:
            return reduce_envelopes(self._table_fold, state, events)
        return reduce_events(self._table_fold, state, events)

    def _log_fold(self, before: TableState[R], after: TableState[R], frame: Frame) -> None:
        """The frame's DEBUG line: the store, its events, the rows they changed, the seq, the table's size."""
        self.log.debug(
            "[%s] frame applied: events=%d rows_changed=%d seq=%s->%s rows=%d",
            self.name,
            len(frame),
            _rows_changed(before, after, frame, self.primary_key),
            before.seq,
            after.seq,
            len(after),
        )

    def _reduce_each(self, state: TableState[R], events: Sequence[Event]) -> TableState[R]:
        """``reduce_batch`` of a class that overrides :meth:`reduce`: every event through it, isolated."""
        reduce = self.reduce
        for event in events:
            try:
                state = reduce(state, event)
            except Exception as exc:
                self.report(event, exc)
        return state


def _window(subset: Subset) -> tuple[tuple[str, str], ...] | None:
    """The fold's ``window`` for ``subset``: its order if it is a window, else ``None``."""
    return subset.order_by if subset.windowed else None


def _rows_changed(before: TableState[Any], after: TableState[Any], frame: Frame, key: str) -> int:
    """How many rows differ from ``before`` to ``after``: a DEBUG line's count, never on the hot path.

    Only the rows a frame of changes names are compared; a frame with a snapshot,
    a reset or a foreign server's payload compares the whole table.
    """
    old, new = before.rows, after.rows
    if old is new:
        return 0
    keys = _keys_named(frame, key)
    if keys is None:
        keys = {*old.keys(), *new.keys()}
    missing = object()
    return sum(1 for k in keys if old.get(k, missing) != new.get(k, missing))


def _keys_named(frame: Frame, key: str) -> set[Any] | None:
    """The keys a frame's changes name (in ``record`` and ``old``); ``None`` if it holds anything else."""
    if type(frame) is ChangeFrame:
        pairs = [(envelope.get("record"), envelope.get("old")) for envelope in frame.envelopes]
    else:
        pairs = []
        for event in frame:
            change = event.change
            if change is None:
                return None
            pairs.append((change.record, change.old))
    return {row[key] for pair in pairs for row in pair if isinstance(row, Mapping) and key in row}
