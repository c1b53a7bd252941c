"""The durable change log behind the gateway: one interface, two backends.

Triggers on watched tables write every INSERT/UPDATE/DELETE into the
``rxstore_changes`` table in the same transaction as the write. The gateway
tails the log from a cursor and never needs to know which database it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs

from rxstore.protocol.events import Change
from rxstore.protocol.subsets import Subset

__all__ = [
    "AppliedMutation",
    "ChangeLog",
    "LogSnapshot",
    "SnapshotReader",
    "Statement",
    "fold_skip",
    "trim_needed",
]

Statement = tuple[str, Sequence[Any]]
"""One SQL statement and its parameters (``?`` placeholders for SQLite, ``$1`` for PostgreSQL)."""


@attrs.frozen
class AppliedMutation:
    """What a change log remembers of an applied client mutation.

    Attributes:
        fingerprint: Digest of the mutation's name and arguments ("" if not given).
        result: The result acknowledged the first time (JSON), ``None`` if none was kept.

    Example:
        >>> AppliedMutation(fingerprint="ab12", result={"id": "p1"}).result
        {'id': 'p1'}
    """

    fingerprint: str
    result: Any


@attrs.frozen
class LogSnapshot:
    """The rows of some topics, all as of one change-log position.

    Attributes:
        seq: Every change with ``seq <= seq`` is reflected in ``tables``.
        tables: Topic -> its rows (each a JSON-able dict).
        skip: Change seqs greater than ``seq`` that are already reflected in
            ``tables`` (PostgreSQL only: changes committed before the snapshot
            but sequenced after it). A client that starts from this snapshot
            must not be sent these. Always empty for SQLite.
    """

    seq: int
    tables: Mapping[str, Sequence[Mapping[str, Any]]]
    skip: frozenset[int] = frozenset()


def fold_skip(seq: int, skip: frozenset[int]) -> tuple[int, frozenset[int]]:
    """Move a snapshot's ``seq`` over the skipped seqs right after it: the same rows, fewer exceptions.

    A snapshot at ``seq`` that reflects ``seq + 1`` (in ``skip``) reflects every change up to
    ``seq + 1``: it is at ``seq + 1``. So a client that starts from it is at the last change it
    holds, even when no change follows (its cursor reaches the log's head).

    Example:
        >>> fold_skip(1, frozenset({2, 3, 5}))
        (3, frozenset({5}))
        >>> fold_skip(1, frozenset({3}))
        (1, frozenset({3}))
    """
    if seq + 1 not in skip:
        return seq, skip
    while seq + 1 in skip:
        seq += 1
    return seq, frozenset(s for s in skip if s > seq)


class SnapshotReader(Protocol):
    """Rows of some topics as of one change-log position, read page by page.

    Open one with :meth:`ChangeLog.snapshot_reader`; it holds a read
    transaction (and a database connection) until it is closed, so a
    snapshot of any size streams with a page of rows in memory at a time.

    Attributes:
        seq: Every change with ``seq <= seq`` is reflected in the rows.
        skip: As :attr:`LogSnapshot.skip`.
        ts: The commit time of the change at ``seq`` (see :meth:`ChangeLog.ts_at`), read in the
            same transaction; ``None`` when there is none.
    """

    seq: int
    skip: frozenset[int]
    ts: float | None

    async def fetch(
        self, topic: str, limit: int, subset: Subset | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Return the next rows of ``topic`` (at most ``limit``, in key order) and whether more follow.

        Topics are read one after the other, each from its first row. With a
        ``subset`` (of ``topic``), only the rows matching its where clause
        (evaluated by the database, see :func:`~rxstore.gateway.log.subset_sql.where_sql`),
        whole; several subsets of one topic may be read one after the other,
        each from its first row. Once a read returned ``False`` (no more), the
        next read of the same topic or subset starts again from its first row.

        Raises:
            ValueError: ``subset`` is of another topic.
        """


class ChangeLog(Protocol):
    """A durable, ordered log of row changes (SQLite or PostgreSQL)."""

    url: str

    async def open(self) -> None:
        """Connect and create the log tables if they do not exist."""

    async def close(self) -> None:
        """Release every connection, task and thread."""

    async def watch(self, table: str, *, primary_key: str = "id", old: str = "full") -> None:
        """Capture the changes of ``table`` (idempotent); topic = table name.

        ``old="key"`` says the topic's envelopes carry only the old row's key, so
        a log that can capture less (PostgreSQL's WAL: the default replica
        identity) may do so.
        """

    async def read(self, after: int, *, limit: int = 1000, max_bytes: int | None = None) -> list[Change]:
        """Return committed changes with ``seq > after`` in seq order, at most ``limit``.

        ``max_bytes`` bounds the JSON size of the rows returned (at least one
        change is returned, however large). Never skips a change: a change
        that is not returned now is returned by a later call with the same
        ``after``.
        """

    async def snapshot(self, topics: Sequence[str]) -> LogSnapshot:
        """Return the rows of ``topics`` at one consistent change-log position."""

    def snapshot_reader(self, topics: Sequence[str]) -> AbstractAsyncContextManager[SnapshotReader]:
        """Open a paged snapshot of ``topics`` at one consistent position (``async with``).

        Raises:
            ValueError: A topic's table does not exist.
        """

    async def columns(self, topic: str) -> dict[str, str]:
        """Return a watched table's columns -> kind (see :func:`~rxstore.gateway.log.subset_sql.column_kind`).

        In table order; a kind is "text", "integer", "real", "boolean" or "other".

        Raises:
            ValueError: ``topic`` is not a watched table.
        """

    async def head(self) -> int:
        """Return the highest seq in the log (0 when empty)."""

    async def horizon(self) -> int:
        """Return the highest seq ever trimmed; a cursor below it cannot resume."""

    async def ts_at(self, seq: int) -> float | None:
        """Return the commit time (``ts``) of the change at ``seq``: one read by the log's key.

        With its seq it identifies a change: a client sends the ``ts`` of the change at its
        cursor, and a log whose change there has another one (a restored backup that numbered
        other changes with the same seqs, another database) gets it a reset and a snapshot.

        Returns:
            ``None`` when the log holds no change at ``seq`` (0, trimmed, never numbered).
        """

    async def epoch(self) -> str:
        """Return the log's identity: a random id made with the log (a re-created log gets a new one).

        A cursor is a position in one log: clients send the epoch with it, and
        a cursor of another epoch (another database, a restored backup) gets a
        reset and a snapshot instead of a replay.
        """

    async def mark_restore(self) -> str:
        """Give the log a new epoch and return it: run after restoring a backup or copying the database.

        Every cursor handed out before then gets a reset and a snapshot.
        """

    async def trim(self, *, max_age: float | None = None, max_rows: int | None = None) -> int:
        """Delete changes older than ``max_age`` seconds or beyond the newest ``max_rows``.

        Returns:
            The number of changes removed.
        """

    async def wait(self, timeout: float) -> None:
        """Return when new changes may be readable, or after ``timeout`` seconds."""

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one write statement in its own transaction, waking the tailers.

        Placeholders are ``?`` for SQLite and ``$1`` for PostgreSQL.
        """

    async def apply_mutation(
        self,
        mutation: str,
        user: str,
        statements: Sequence[Statement],
        *,
        fingerprint: str = "",
        result: Any = None,
    ) -> bool:
        """Run ``statements`` in one transaction, once per ``(user, mutation)``.

        The changes they write carry ``mutation`` in their envelope. ``fingerprint``
        and ``result`` are kept with the mutation id (see :meth:`applied_mutation`).

        Returns:
            False when this user's mutation was applied before (nothing was run).
        """

    async def applied_mutation(self, mutation: str, user: str) -> AppliedMutation | None:
        """What was kept when this user's mutation was applied; ``None`` if it was not (or is forgotten)."""

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Run one query and return its rows as dicts."""

    @property
    def healthy(self) -> bool:
        """False while the database connection is lost (and being re-established)."""


def trim_needed(max_age: float | None, max_rows: int | None) -> bool:
    """Check :meth:`ChangeLog.trim`'s limits; ``False`` when there is nothing to trim by.

    Raises:
        ValueError: A limit is negative.

    Example:
        >>> trim_needed(None, None), trim_needed(3600.0, None)
        (False, True)
    """
    if max_age is not None and max_age < 0:
        raise ValueError(f"max_age must be >= 0, got {max_age!r}")
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows!r}")
    return max_age is not None or max_rows is not None
