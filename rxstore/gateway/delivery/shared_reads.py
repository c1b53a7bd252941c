"""Shared snapshot reads: clients that want the same rows at once share one read of the database.

A storm of first connects (a restarted gateway, clients whose cursors are out
of retention) would otherwise run one query per client. Instead, clients that
ask for the same parts (topics, or subsets of them) while a read of those parts
waits for a slot join that read; once it starts (it holds one of the
``snapshot_concurrency`` slots, a read transaction and a connection) it is
sealed, and later arrivals form the next read. A read takes one page of rows
at a time and hands it to every member, each getting only the rows
``authorize`` lets it see, in frames of at most ``frame_bytes``; the next page
is read while the members take the current one's frames (one page ahead, no more), so
memory stays two pages per read however big the table and however many members. Every member gets the
same seq (and skip), so it goes on with the changes after it.

A read moves at its slowest member's pace: python-engineio holds a few frames
per client, and a member that takes none for ``client_send_timeout`` is
dropped (it resumes later) and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import attrs

from rxstore.gateway.api import RowFilter
from rxstore.gateway.delivery.queues import Client, Delivery, OutFrame, log_failure
from rxstore.gateway.log.contract import ChangeLog, SnapshotReader
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.queries.relations import RelationState
from rxstore.gateway.queries.windows import WindowState
from rxstore.protocol.errors import NotConnected
from rxstore.protocol.subsets import MAX_RELATION_VALUES, Subset, SubsetError, Term

__all__ = ["MAX_PAGE_ROWS", "Part", "SharedReads"]

MAX_PAGE_ROWS = 10_000
"""Most rows read from a snapshot at once."""

Part = tuple[str, Subset | None]
"""One thing a snapshot reads: a topic's rows (``None``: all of them) or a subset's."""

Picked = tuple[int, ...] | None
"""The indexes of a page's rows a member may see (``None``: all)."""


@attrs.define(eq=False)
class _Member:
    """A client waiting for, or getting, a shared read: its event name per part, and its outcome."""

    client: Client
    events: tuple[str, ...]
    done: asyncio.Future[tuple[int, frozenset[int]]]
    active: bool = False
    windows: tuple[WindowState | None, ...] = ()
    """Per part, the window its rows are loaded into (``None``: not a window)."""
    relations: tuple[RelationState | None, ...] = ()
    """Per part, the relation its subquery's rows are loaded into (``None``: no relation)."""

    def remaining(self, index: int) -> int | None:
        """How many more rows part ``index`` takes (``None``: no bound); 0 once its window is full."""
        relation = self.relations[index] if self.relations else None
        if relation is not None and relation.ended:
            return 0
        window = self.windows[index] if self.windows else None
        if window is None or window.subset.limit is None:
            return None
        return window.subset.limit - len(window.entries)


@attrs.define(eq=False)
class _Read:
    """One read of some parts, and the clients that share it."""

    parts: tuple[Part, ...]
    members: list[_Member] = attrs.field(factory=list)
    users: set[str] = attrs.field(factory=set)
    """The ids of its members' users."""
    finished: asyncio.Event = attrs.field(factory=asyncio.Event)


class SharedReads:
    """Snapshot reads shared by the clients that want the same parts at once.

    Args:
        log: The change log.
        delivery: The clients' sockets.
        metrics: The gateway's metrics (``rxstore_snapshot_reads`` counts the reads).
        authorize: The row filter, failing closed (``None``: every row).
        primary_keys: Topic -> primary key.
        slots: Bounds the reads open at once (``snapshot_concurrency``).
    """

    def __init__(
        self,
        log: ChangeLog,
        delivery: Delivery,
        metrics: Metrics,
        *,
        authorize: RowFilter | None,
        primary_keys: Mapping[str, str],
        slots: asyncio.Semaphore,
    ) -> None:
        self.log = log
        self.delivery = delivery
        self.metrics = metrics
        self.authorize = authorize
        self.primary_keys = primary_keys
        self.slots = slots
        self._forming: dict[tuple[Part, ...], _Read] = {}
        self._by_user: dict[str, _Read] = {}
        """The read each user's clients are in: one at a time per user."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def stream(
        self,
        client: Client,
        parts: Sequence[Part],
        events: Sequence[str],
        windows: Sequence[WindowState | None] = (),
        relations: Sequence[RelationState | None] = (),
    ) -> tuple[int, frozenset[int]]:
        """Send ``client`` the rows of ``parts`` (under ``events``) from a read it may share.

        A window's part (its ``windows`` entry) is sent in its order, only its first
        ``limit`` rows the client may see, and loaded into the window. A relation's
        part (its ``relations`` entry) has its subquery's rows loaded into the relation
        first, in the same transaction; over the bound, the relation ends (an empty
        snapshot) or, if it says ``refuse``, the stream fails with a ``SubsetError``.

        Returns:
            The read's seq and skip (see :class:`~rxstore.gateway.log.contract.SnapshotReader`).

        One user's clients are in one read at a time (several of them may share
        it), so that one user's stalled connections cannot hold every slot.

        Raises:
            Stalled: The client took no frame for ``client_send_timeout``.
        """
        key, user = tuple(parts), client.user.id
        member = _Member(
            client,
            tuple(events),
            asyncio.get_running_loop().create_future(),
            windows=tuple(windows),
            relations=tuple(relations),
        )
        metrics = self.metrics
        metrics.snapshots_waiting.inc()
        try:
            while (mine := self._by_user.get(user)) is not None and self._forming.get(key) is not mine:
                await mine.finished.wait()  # the user's other read first
            read = self._forming.get(key) or self._start(key)
            read.members.append(member)
            read.users.add(user)
            self._by_user[user] = read
            return await member.done
        finally:
            (metrics.snapshots_active if member.active else metrics.snapshots_waiting).dec()

    def _start(self, key: tuple[Part, ...]) -> _Read:
        """A new read of ``key``, forming until it gets a slot."""
        read = self._forming[key] = _Read(key)
        task = asyncio.create_task(self._run(read), name="rxstore-snapshot-read")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure)
        return read

    async def stop(self) -> None:
        """Cancel the reads under way (their members are gone or going)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _run(self, read: _Read) -> None:
        """Wait for a slot, seal the read, and stream it to its members."""
        try:
            async with self._slot():
                if self._forming.get(read.parts) is read:
                    del self._forming[read.parts]  # sealed: later arrivals form the next read
                members = self._started(read)
                if not members:
                    return
                topics = sorted({name for part in read.parts for name in _topics(part)})
                async with self.log.snapshot_reader(topics) as reader:
                    self.metrics.snapshot_reads.inc()
                    for index, part in enumerate(read.parts):
                        await self._stream(reader, members, index, part)
                    outcome = (reader.seq, reader.skip)
            for member in members:
                if not member.done.done():
                    member.done.set_result(outcome)
        except BaseException as exc:
            for member in read.members:
                if not member.done.done():
                    stopped = NotConnected("the gateway stopped this snapshot read")
                    member.done.set_exception(exc if isinstance(exc, Exception) else stopped)
            if not isinstance(exc, Exception):
                raise
        finally:
            if self._forming.get(read.parts) is read:
                del self._forming[read.parts]
            for user in read.users:
                if self._by_user.get(user) is read:
                    del self._by_user[user]
            read.finished.set()

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        async with self.slots:
            yield

    def _started(self, read: _Read) -> list[_Member]:
        """The members still waiting when ``read`` starts, marked active."""
        members = [member for member in read.members if not member.done.done()]
        for member in members:
            member.active = True
            self.metrics.snapshots_waiting.dec()
            self.metrics.snapshots_active.inc()
        return members

    async def _stream(self, reader: SnapshotReader, members: list[_Member], index: int, part: Part) -> None:
        """Stream one part to every member still there, a page at a time."""
        topic, subset = part
        key = self.primary_keys[topic]
        if subset is not None and any(m.relations and m.relations[index] for m in members):
            members = await self._relate(reader, members, index, subset)
        if self._as_text(reader, members, index, subset):
            return await self._stream_text(cast(_TextReader, reader), members, index, part)
        limit = 16  # rows per page: adapted to the rows' size so that a page is about one frame
        pages = _Pages(lambda n: reader.fetch(topic, n, subset) if subset else reader.fetch(topic, n))
        try:
            while True:
                members = [m for m in members if not m.done.done() and m.remaining(index) != 0]
                if not members:
                    return
                rows, more = await pages.next(limit)
                if more and all(m.remaining(index) is None for m in members):
                    pages.ahead(limit)  # read while this page is sent (a window's read stops at its end)
                sends, per_row = self._page(reader, members, index, part, key, rows, more)
                if sends:
                    await asyncio.gather(*sends)
                if not more:
                    return
                if per_row is None:
                    limit = min(limit * 2, MAX_PAGE_ROWS)  # all hidden: read on
                else:
                    limit = max(1, min(MAX_PAGE_ROWS, self.delivery.frame_bytes // per_row))
        finally:
            await pages.drop()

    def _as_text(
        self, reader: SnapshotReader, members: list[_Member], index: int, subset: Subset | None
    ) -> bool:
        """Whether a part's rows may go as the database's JSON texts: no row filter, window or projection."""
        return (
            self.authorize is None
            and self.delivery.text_rows
            and hasattr(reader, "fetch_text")
            and (subset is None or subset.columns is None)
            and not any(
                (m.windows and m.windows[index]) or (m.relations and m.relations[index]) for m in members
            )
        )

    async def _stream_text(self, reader: _TextReader, members: list[_Member], index: int, part: Part) -> None:
        """:meth:`_stream` with rows as JSON texts, put into frames as they are (PostgreSQL's)."""
        topic, subset = part
        limit = 16
        pages = _Pages(lambda n: reader.fetch_text(topic, n, subset))
        try:
            while True:
                members = [m for m in members if not m.done.done()]
                if not members:
                    return
                texts, more = await pages.next(limit)
                if more:
                    pages.ahead(limit)  # the database writes the next page while this one is sent
                groups: dict[str, list[_Member]] = {}
                for member in members:
                    groups.setdefault(member.events[index], []).append(member)
                sends: list[Any] = []
                for event, group in groups.items():
                    frames = self.delivery.snapshot_text_frames(
                        topic, event, reader.seq, texts, more, reader.ts
                    )
                    sends.extend(self._send(member, frames) for member in group)
                await asyncio.gather(*sends)
                if not more:
                    return
                per_row = max(1, sum(map(len, texts)) // max(1, len(texts)))
                limit = max(1, min(MAX_PAGE_ROWS, self.delivery.frame_bytes // per_row))
        finally:
            await pages.drop()

    async def _relate(
        self, reader: SnapshotReader, members: list[_Member], index: int, subset: Subset
    ) -> list[_Member]:
        """Load the subquery's rows into each member's relation; the members that go on with the part.

        A relation over the bound refuses its member's stream, or ends (an empty snapshot).
        """
        term = subset.relation
        assert term is not None
        relation = term.value
        selected = Subset(relation.topic, (*relation.where, Term(relation.select, "is not null")))
        rows, more = await reader.fetch(relation.topic, MAX_RELATION_VALUES + 1, selected)
        going = []
        for member in members:
            state = member.relations[index] if member.relations else None
            if state is None:
                going.append(member)
                continue
            state.load(rows)
            if not state.ended and not more:
                going.append(member)
            elif state.refuse:
                member.done.set_exception(SubsetError(relation.too_many(MAX_RELATION_VALUES)))
            else:
                state.end()
                frames = self.delivery.snapshot_frames(
                    subset.topic, member.events[index], reader.seq, [], False, reader.ts
                )
                await self._send(member, frames)
        return going

    def _page(
        self,
        reader: SnapshotReader,
        members: list[_Member],
        index: int,
        part: Part,
        key: str,
        rows: list[dict[str, Any]],
        more: bool,
    ) -> tuple[list[Any], int | None]:
        """The sends of one page to each member (frames shared by equal views); bytes per row read."""
        topic, subset = part
        groups: dict[tuple[Picked, str, int | None], list[_Member]] = {}
        for member in members:
            found = (self._picked(member.client, topic, rows), member.events[index], member.remaining(index))
            groups.setdefault(found, []).append(member)
        sends: list[Any] = []
        per_row: int | None = None
        for (picked, event, remaining), group in groups.items():
            visible = rows if picked is None else [rows[i] for i in picked]
            last = not more
            if remaining is not None:  # a window: its first rows only
                visible = visible[:remaining]
                last = last or len(visible) == remaining
            for member in group:
                window = member.windows[index] if member.windows else None
                if window is not None:
                    window.load(visible)
            if subset is not None and subset.columns is not None:
                visible = [subset.project(row, key) for row in visible]
            if not visible and not last:
                continue
            frames = self.delivery.snapshot_frames(topic, event, reader.seq, visible, not last, reader.ts)
            if visible:
                nbytes = sum(frame.nbytes for frame in frames)
                per_row = max(per_row or 1, nbytes // len(visible) * len(visible) // max(1, len(rows)))
            sends.extend(self._send(member, frames) for member in group)
        return sends, per_row

    def _picked(self, client: Client, topic: str, rows: list[dict[str, Any]]) -> Picked:
        authorize = self.authorize
        if authorize is None:
            return None
        user = client.user
        return tuple(i for i, row in enumerate(rows) if authorize(user, topic, row))

    async def _send(self, member: _Member, frames: list[OutFrame]) -> None:
        """Send a member its frames; a failure (stalled, gone) ends its share of the read only."""
        try:
            for frame in frames:
                if member.done.done():
                    return
                await self.delivery.send(member.client, frame)
                self.metrics.snapshot_frames.inc()
        except Exception as exc:
            if not member.done.done():
                member.done.set_exception(exc)


class _Pages:
    """A part's pages, the next one read while the current one is sent (one page ahead at most).

    The database (or the reading thread) works on page N+1 while the loop encodes and
    sends page N, so a read holds two pages at most, not one. The page read ahead has
    the current page's size (its own size is known only once the current one is sent).
    """

    def __init__(self, read: Callable[[int], Awaitable[tuple[list[Any], bool]]]) -> None:
        self._read = read
        self._ahead: asyncio.Future[tuple[list[Any], bool]] | None = None

    def ahead(self, limit: int) -> None:
        """Start reading the next page of ``limit`` rows."""
        self._ahead = asyncio.ensure_future(self._read(limit))

    async def next(self, limit: int) -> tuple[list[Any], bool]:
        """The page read ahead, else a page of ``limit`` rows read now."""
        ahead, self._ahead = self._ahead, None
        return await (ahead if ahead is not None else self._read(limit))

    async def drop(self) -> None:
        """Let the page read ahead finish, unused (the members left, or sending failed).

        Not cancelled: the reader's connection or thread must be free for the next part.
        """
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            with contextlib.suppress(Exception):
                await ahead


class _TextReader(SnapshotReader, Protocol):
    """A reader that also gives rows as JSON texts (PostgreSQL's)."""

    async def fetch_text(
        self, topic: str, limit: int, subset: Subset | None = None
    ) -> tuple[list[str], bool]:
        """The next rows of ``topic`` as JSON texts, and whether more follow."""


def _topics(part: Part) -> tuple[str, ...]:
    """The tables a part reads: its topic, and a relation's related table."""
    topic, subset = part
    term = subset.relation if subset is not None else None
    return (topic,) if term is None else (topic, term.value.topic)
