"""The WAL capture's memory bound: decoded changes held in memory, a huge transaction spooled.

One pass of the capture (one database transaction, see
:mod:`rxstore.gateway.log.postgres.decode`) hands each transaction it decodes to a
:class:`Spool`. Whole transactions wait in memory and are appended to the log together;
once ``limit`` changes wait, they are appended at once, and the transaction still being
decoded moves, converted, to a temporary table of the capture's connection
(``rxstore_capture_spool``), part after part, until its commit is read: then it is copied
into the log in one statement. Nothing of it is visible before the pass commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from rxstore.gateway.log.postgres.decode import (
    NUMBERED_SQL,
    Transaction,
    append,
    begin_numbering,
    lsn_value,
    rows,
    xid8_of,
)
from rxstore.gateway.log.postgres.schema import Conn

__all__ = ["SPOOL_SCHEMA", "Spool"]

SPOOL_SCHEMA: Final = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS rxstore_capture_spool ("
    "n bigint GENERATED ALWAYS AS IDENTITY, topic text NOT NULL, op text NOT NULL, record jsonb, old jsonb)"
)
"""The capture connection's spool (its own, temporary: gone with the connection)."""


class Spool:
    """Decoded changes on their way into the log, at most about ``limit`` of them in memory.

    (Or fewer: those whose messages add up to ``limit_bytes``.)

    Args:
        conn: The capture's connection, inside the pass's transaction (the spool table made).
        keys: Topic -> its key where ``old`` rows are the key alone (see
            :func:`~rxstore.gateway.log.postgres.decode.rows`).
        after: Transactions that committed at or before this LSN are in the log already.
        limit: Changes held in memory before they are appended or spooled.
        limit_bytes: Bytes of the slot's messages held before they are appended or spooled.
    """

    def __init__(
        self, conn: Conn, keys: Mapping[str, str | None], after: str, *, limit: int, limit_bytes: int
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.after = lsn_value(after)
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.appended = 0
        """Changes appended to the log by this pass."""
        self.parts = 0
        """Parts written to the spool by this pass."""
        self.peak = 0
        """The most changes held in memory at once in this pass."""
        self.peak_bytes = 0
        """The most bytes of the slot's messages held in memory at once in this pass."""
        self._ready: list[Transaction] = []
        self._held = 0
        self._held_bytes = 0
        self._numbering = False

    async def committed(self, tx: Transaction) -> None:
        """Take a transaction whose commit was read: hold it, or copy it from the spool into the log."""
        if lsn_value(tx.commit_lsn) <= self.after:  # appended before (the slot not advanced then)
            if tx.spooled:
                await self.conn.execute("TRUNCATE rxstore_capture_spool")
            return
        if tx.spooled:
            await self.flush()
            await self._part(tx)
            await self._move(tx)
        elif tx.changes:
            self._ready.append(tx)
            self._held += len(tx.changes)
            self.peak = max(self.peak, self._held)

    def full(self, current: Transaction | None, size: int) -> bool:
        """Count ``size`` more bytes of messages decoded; whether :meth:`release` is due.

        It is once ``limit`` changes (those waiting and ``current``'s) or ``limit_bytes`` of
        messages are held.
        """
        held = self._held + (len(current.changes) if current is not None else 0)
        self._held_bytes += size
        if held > self.peak:
            self.peak = held
        if self._held_bytes > self.peak_bytes:
            self.peak_bytes = self._held_bytes
        return held >= self.limit or self._held_bytes >= self.limit_bytes

    async def release(self, current: Transaction | None) -> None:
        """Append the transactions that wait and spool ``current``'s changes: nothing is held."""
        await self.flush()
        if current is not None and current.changes:
            await self._part(current)
        self._held_bytes = 0

    async def flush(self) -> None:
        """Append the whole transactions that wait (in commit order)."""
        if self._ready:
            await self._number()
            await append(self.conn, self._ready, self.keys)
            self.appended += self._held
            self._ready, self._held = [], 0

    async def _part(self, tx: Transaction) -> None:
        """Spool ``tx``'s changes read so far, converted; they leave memory."""
        if not tx.changes:
            return
        columns = await rows(self.conn, [tx], self.keys)
        await self.conn.execute(
            "INSERT INTO rxstore_capture_spool (topic, op, record, old) "
            "SELECT t, o, r::jsonb, p::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) "
            "WITH ORDINALITY AS u(t, o, r, p, n) ORDER BY n",
            *columns[:4],
        )
        tx.spooled += len(tx.changes)
        tx.changes.clear()
        self.parts += 1

    async def _move(self, tx: Transaction) -> None:
        """Copy a spooled transaction into the log, in its order, with its commit's values."""
        await self._number()
        now = int(await self.conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
        await self.conn.execute(
            NUMBERED_SQL.format(
                count="$5::bigint",
                rows="SELECT h.base + row_number() OVER (ORDER BY s.n), topic, op, record, old, "
                "coalesce($1::float8, extract(epoch FROM clock_timestamp())), $2::text, $3::bigint, "
                "$4::text::pg_lsn FROM h, rxstore_capture_spool AS s ORDER BY s.n",
            ),
            tx.timestamp,
            tx.mutation,
            xid8_of(tx.xid, now),
            tx.commit_lsn,
            tx.spooled,
        )
        await self.conn.execute("TRUNCATE rxstore_capture_spool")
        self.appended += tx.spooled

    async def _number(self) -> None:
        """Hold the sequencer's lock from the pass's first append on (see :func:`begin_numbering`)."""
        if not self._numbering:
            await begin_numbering(self.conn)
            self._numbering = True
