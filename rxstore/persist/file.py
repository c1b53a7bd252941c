"""The client's state file: one SQLite file in WAL mode, opened by one process at a time.

Tables (format ``rxstore-client-state/2``, in ``rxstore_meta``):

* ``rxstore_meta(k, v)``: the format, the cursor, its event name and ``ts``, and the log's epoch;
* ``rxstore_subs(sub, spec, seq)``: each followed subscription (its id), what it
  follows (topic, where, columns, primary key, record type) and its table's seq;
* ``rxstore_rows(sub, key, row)``: the rows, as the gateway sent them (JSON);
* ``rxstore_journal(n, sub, rows)``: the rows changed since, one entry per write and subscription
  (``[[key, ...], [row or null, ...]]``, JSON), appended: the rows are these entries applied in order
  to ``rxstore_rows`` (read at start, folded into ``rxstore_rows`` past :func:`journal_bound`);
* ``rxstore_states(store, state)``: opted-in domain stores' states (their codec's JSON);
* ``rxstore_outbox(n, id, name, args, optimistic, timeout)``: mutations accepted, not yet settled.

Every write is one transaction (:meth:`StateFile.write`), so the rows, the states
and the cursor on disk always belong together. A change appends to the journal (one
row per write: about 1 µs a changed row) instead of replacing its row in place (a
B-tree page written per row or few rows: 5-16 µs); a subscription's snapshot replaces
its rows and drops its journal. The file is opened in
``EXCLUSIVE`` locking mode: a second process gets :class:`PersistError` ``locked``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, Final

import attrs
import msgspec

from rxstore.persist.batch import Batch
from rxstore.persist.json_rows import dumps, rows_of
from rxstore.protocol.errors import PersistError

__all__ = ["FORMAT", "JOURNAL_MIN", "Loaded", "StateFile", "journal_bound"]

FORMAT: Final = "rxstore-client-state/2"
"""The file format this version reads and writes; any other is discarded (a fresh snapshot)."""

log = logging.getLogger("rxstore.persist")


_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS rxstore_meta (k TEXT PRIMARY KEY, v TEXT)",
    "CREATE TABLE IF NOT EXISTS rxstore_subs (sub TEXT PRIMARY KEY, spec TEXT NOT NULL, seq INTEGER)",
    "CREATE TABLE IF NOT EXISTS rxstore_rows "
    "(sub TEXT NOT NULL, key TEXT NOT NULL, row TEXT NOT NULL, PRIMARY KEY (sub, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS rxstore_journal "
    "(n INTEGER PRIMARY KEY, sub TEXT NOT NULL, rows TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rxstore_states (store TEXT PRIMARY KEY, state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rxstore_outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
    " name TEXT NOT NULL, args TEXT NOT NULL, optimistic TEXT NOT NULL, timeout REAL NOT NULL)",
)
_TABLES: Final = (
    "rxstore_meta",
    "rxstore_subs",
    "rxstore_rows",
    "rxstore_journal",
    "rxstore_states",
    "rxstore_outbox",
)
_STATE_TABLES: Final = ("rxstore_subs", "rxstore_rows", "rxstore_journal", "rxstore_states")

JOURNAL_MIN: Final = 20_000
"""Journal entries (changed rows) the file may hold whatever its size, before they are folded in."""


def journal_bound(rows: int) -> int:
    """The journal entries past which a write folds the journal into the rows (``rows``: the rows held).

    The rows held, at least :data:`JOURNAL_MIN`: the journal stays no longer than the rows, so a
    start reads at most twice them, and a fold (about 4-5 µs an entry) comes once per as many changes.

    Example:
        >>> journal_bound(100_000), journal_bound(10)
        (100000, 20000)
    """
    return max(JOURNAL_MIN, rows)


@attrs.frozen
class Loaded:
    """What a state file holds, read at start.

    Attributes:
        cursor: The cursor the rows belong to (``None``: nothing to resume).
        cursor_event: The event name of the cursor's change.
        cursor_ts: The commit time of the cursor's change (``None``: unknown).
        epoch: The change log's epoch of the cursor.
        subs: Subscription id -> (spec, seq of its table).
        rows: Subscription id -> its rows (dicts, as the gateway sent them).
        states: Domain store name -> its codec's JSON value.
        outbox: Mutations not yet settled, in order: ``(id, name, args, optimistic, timeout)``.
    """

    cursor: int | None = None
    cursor_event: str | None = None
    cursor_ts: float | None = None
    epoch: str | None = None
    subs: dict[str, tuple[dict[str, Any], int | None]] = attrs.field(factory=dict)
    rows: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)
    states: dict[str, Any] = attrs.field(factory=dict)
    outbox: list[tuple[str, str, Any, dict[str, Any], float]] = attrs.field(factory=list)


class StateFile:
    """One open state file. Not thread-safe: the loader, then one writer thread, use it in turn.

    Args:
        path: The file (created if missing).

    Raises:
        PersistError: ``locked``: another process has it open; ``foreign``: it is a
            SQLite database of something else (it is left untouched).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.problem: PersistError | None = None
        """Why the file was started afresh (``corrupt``, an older format), told once by the root."""
        self._counts: tuple[dict[str, int], dict[str, int]] | None = None
        """Rows held and journal entries, per subscription (``None``: not counted yet)."""
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if _is_locked(exc):
                raise self._locked() from exc
            self._set_aside(exc)
            self._db = self._open()

    # -- opening ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-65536")
            db.execute("BEGIN IMMEDIATE")  # takes the file's lock now: held until close
            try:
                self._check(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def _check(self, db: sqlite3.Connection) -> None:
        """Make the schema, or check it is ours and of this format (an older one is emptied)."""
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        others = {name for name in names if not name.startswith(("rxstore_", "sqlite_"))}
        if others or (names and "rxstore_meta" not in names):
            raise PersistError(
                "foreign",
                f"{self.path} is a SQLite database of something else (tables {sorted(others or names)[:3]}); "
                "give RootStore(persist=...) a file of its own",
                path=str(self.path),
            )
        for statement in _SCHEMA:
            db.execute(statement)
        row = db.execute("SELECT v FROM rxstore_meta WHERE k = 'format'").fetchone()
        if row is not None and row[0] != FORMAT:
            self.problem = PersistError(
                "older_format",
                f"{self.path} holds the state format {row[0]!r}, not {FORMAT!r}: "
                "starting from a fresh snapshot",
                path=str(self.path),
            )
            for table in _TABLES:
                db.execute(f"DELETE FROM {table}")  # our own table names
        db.execute("INSERT OR REPLACE INTO rxstore_meta VALUES ('format', ?)", (FORMAT,))

    def _locked(self) -> PersistError:
        return PersistError(
            "locked",
            f"{self.path} is open in another process (one state file per process): "
            "give each process its own persist= file",
            path=str(self.path),
        )

    def _set_aside(self, exc: Exception) -> None:
        """Move a corrupt file (and its WAL) aside, to ``<name>.corrupt-<time>``, and start afresh."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                part.replace(f"{aside}{suffix}")
        self.problem = PersistError(
            "corrupt",
            f"{self.path} is not a readable state file ({exc}); moved to {aside.name}, "
            "starting from a fresh snapshot",
            path=str(self.path),
        )

    # -- reading ---------------------------------------------------------------

    def load(self) -> Loaded:
        """Read everything the file holds (at start, before the writer runs).

        A file that turns out corrupt while read is set aside as at open (a fresh one is
        started: nothing of it, the outbox included, can be trusted), its problem kept in
        :attr:`problem`.
        """
        try:
            return self._load()
        except (sqlite3.DatabaseError, ValueError) as exc:
            self._counts = None
            self._db.close()  # its lock released: it is moved aside, and a fresh file opened
            self._set_aside(exc)
            self._db = self._open()
            return Loaded()

    def _load(self) -> Loaded:
        db = self._db
        meta = dict(db.execute("SELECT k, v FROM rxstore_meta").fetchall())
        cursor = meta.get("cursor")
        subs: dict[str, tuple[dict[str, Any], int | None]] = {
            sub: (json.loads(spec), seq)
            for sub, spec, seq in db.execute("SELECT sub, spec, seq FROM rxstore_subs")
        }
        rows: dict[str, list[dict[str, Any]]] = {sub: [] for sub in subs}
        try:
            for sub, text in db.execute(_ROWS_AS_ARRAYS):
                rows[sub] = rows_of(text)
        except sqlite3.DataError:  # one table's rows past SQLite's longest string (1 GB): row by row
            rows = {sub: [] for sub in subs}
            for sub, text in db.execute("SELECT sub, row FROM rxstore_rows"):
                rows.setdefault(sub, []).append(rows_of(text))
        held = {sub: len(sub_rows) for sub, sub_rows in rows.items()}
        journal: dict[str, list[list[Any]]] = {}
        for sub, text in db.execute("SELECT sub, rows FROM rxstore_journal ORDER BY n"):
            entry = rows_of(text)  # [keys, rows]: two lists, not a list per row (the collector's work)
            if not (type(entry) is list and len(entry) == 2 and all(type(part) is list for part in entry)):
                raise ValueError(f"a journal entry of {sub!r} is not [keys, rows]: {text[:100]!r}")
            journal.setdefault(sub, []).append(entry)
        journaled = {sub: sum(len(entry[0]) for entry in entries) for sub, entries in journal.items()}
        for sub, entries in journal.items():
            if sub not in subs:  # rows of nothing followed (never written so): the root does not show them
                continue
            spec = subs[sub][0]
            if not isinstance(spec, dict) or "key" not in spec:
                raise ValueError(f"the journal holds rows of {sub!r}, which has no primary key on file")
            rows[sub] = _applied(rows.get(sub, []), spec["key"], entries)
        self._counts = held, journaled
        states = {
            name: json.loads(state) for name, state in db.execute("SELECT store, state FROM rxstore_states")
        }
        outbox = [
            (id_, name, json.loads(args), json.loads(optimistic), timeout)
            for id_, name, args, optimistic, timeout in db.execute(
                "SELECT id, name, args, optimistic, timeout FROM rxstore_outbox ORDER BY n"
            )
        ]
        return Loaded(
            cursor=None if cursor is None else int(cursor),
            cursor_event=meta.get("cursor_event"),
            cursor_ts=None if meta.get("cursor_ts") is None else float(meta["cursor_ts"]),
            epoch=meta.get("epoch"),
            subs=subs,
            rows=rows,
            states=states,
            outbox=outbox,
        )

    # -- writing ---------------------------------------------------------------

    def discard(self) -> None:
        """Forget the state (rows, states, cursor), keeping the outbox: the next start takes a snapshot."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        for table in _STATE_TABLES:
            db.execute(f"DELETE FROM {table}")  # our own table names
        db.execute("DELETE FROM rxstore_meta WHERE k IN ('cursor', 'cursor_event', 'cursor_ts', 'epoch')")
        db.execute("COMMIT")
        self._counts = {}, {}

    def write(self, batch: Batch) -> int:
        """Write ``batch`` in one transaction; return the file's size in bytes afterwards.

        Raises:
            sqlite3.Error: The write failed (a full disk, an I/O error): nothing of it was written.
        """
        db = self._db
        held, journaled = self._counted()
        db.execute("BEGIN IMMEDIATE")
        try:
            for sub in batch.cleared:
                db.execute("DELETE FROM rxstore_rows WHERE sub = ?", (sub,))
                db.execute("DELETE FROM rxstore_journal WHERE sub = ?", (sub,))
            for sub, changed in batch.rows.items():
                if sub in batch.cleared:  # a snapshot: its rows, in place of the old ones and their journal
                    kept = [(sub, _key_text(key), row) for key, row in changed.items() if row is not None]
                    db.executemany("INSERT OR REPLACE INTO rxstore_rows VALUES (?, ?, ?)", kept)
                elif changed:  # one entry, built from the row texts: appended, no row rewritten in place
                    keys = ",".join([_key_text(key) for key in changed])
                    texts = ",".join(["null" if row is None else row for row in changed.values()])
                    db.execute(
                        "INSERT INTO rxstore_journal (sub, rows) VALUES (?, ?)",
                        (sub, f"[[{keys}],[{texts}]]"),
                    )
            for sub, (spec, seq) in batch.subs.items():
                db.execute("INSERT OR REPLACE INTO rxstore_subs VALUES (?, ?, ?)", (sub, dumps(spec), seq))
            for name, state in batch.states.items():
                db.execute("INSERT OR REPLACE INTO rxstore_states VALUES (?, ?)", (name, dumps(state)))
            if batch.cursor_known:
                meta = {
                    "cursor": batch.cursor,
                    "cursor_event": batch.cursor_event,
                    "cursor_ts": None if batch.cursor_ts is None else repr(batch.cursor_ts),
                    "epoch": batch.epoch,
                }
                for k, v in meta.items():
                    if v is None:
                        db.execute("DELETE FROM rxstore_meta WHERE k = ?", (k,))
                    else:
                        db.execute("INSERT OR REPLACE INTO rxstore_meta VALUES (?, ?)", (k, str(v)))
            for id_, name, args, optimistic, timeout in batch.outbox_added:
                db.execute(
                    "INSERT OR IGNORE INTO rxstore_outbox (id, name, args, optimistic, timeout)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (id_, name, dumps(args), dumps(optimistic), timeout),
                )
            if batch.outbox_removed:
                db.executemany(
                    "DELETE FROM rxstore_outbox WHERE id = ?", [(i,) for i in batch.outbox_removed]
                )
            held_now, journaled_now = dict(held), dict(journaled)
            for sub in batch.cleared:
                held_now[sub] = sum(row is not None for row in batch.rows.get(sub, {}).values())
                journaled_now.pop(sub, None)
            for sub, changed in batch.rows.items():
                if sub not in batch.cleared and changed:
                    journaled_now[sub] = journaled_now.get(sub, 0) + len(changed)
            if sum(journaled_now.values()) > journal_bound(sum(held_now.values())):
                held_now, journaled_now = self._fold(), {}
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._counts = held_now, journaled_now
        page_count = db.execute("PRAGMA page_count").fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        return int(page_count * page_size)

    def _counted(self) -> tuple[dict[str, int], dict[str, int]]:
        """Rows held and journal entries per subscription: counted once (a write before any load)."""
        if self._counts is None:
            db = self._db
            held = dict(db.execute("SELECT sub, count(*) FROM rxstore_rows GROUP BY sub").fetchall())
            journaled: dict[str, int] = {}
            for sub, text in db.execute("SELECT sub, rows FROM rxstore_journal"):
                journaled[sub] = journaled.get(sub, 0) + len(rows_of(text)[0])
            self._counts = held, journaled
        return self._counts

    def _fold(self) -> dict[str, int]:
        """Fold the journal into ``rxstore_rows`` (in the write's transaction) and empty it; the rows held.

        Each key's last entry wins: its row replaces the one held, or ``null`` deletes it.
        """
        db = self._db
        last: dict[str, dict[bytes, msgspec.Raw | None]] = {}
        for sub, text in db.execute("SELECT sub, rows FROM rxstore_journal ORDER BY n"):
            changed = last.setdefault(sub, {})
            for key, row in _entries(text):
                changed[key] = row
        for sub, changed in last.items():
            gone = [(sub, key.decode()) for key, row in changed.items() if row is None]
            if gone:
                db.executemany("DELETE FROM rxstore_rows WHERE sub = ? AND key = ?", gone)
            kept = [
                (sub, key.decode(), bytes(row).decode())
                for key in sorted(changed)
                if (row := changed[key]) is not None
            ]
            db.executemany("INSERT OR REPLACE INTO rxstore_rows VALUES (?, ?, ?)", kept)  # in the key's order
        db.execute("DELETE FROM rxstore_journal")
        return dict(db.execute("SELECT sub, count(*) FROM rxstore_rows GROUP BY sub").fetchall())

    def close(self) -> None:
        """Close the file (a checkpoint folds the WAL into it); its lock is released."""
        self._db.close()


_ROWS_AS_ARRAYS: Final = "SELECT sub, '[' || group_concat(row, ',') || ']' FROM rxstore_rows GROUP BY sub"
"""Each subscription's rows as one JSON array: one decoder call per table, not one per row."""


def _key_text(key: Any) -> str:
    """``dumps(key)``, an integer's or a string's without the encoder's dispatch (0.1 µs, not 0.8)."""
    kind = type(key)
    if kind is int:
        return int.__repr__(key)
    if kind is str:
        return _string_text(key)
    return dumps(key)


_string_text: Final = encode_basestring_ascii
"""How :func:`dumps` writes a string (ASCII, as ``json.dumps``: the keys on file are its)."""

_raw_entry: Final = msgspec.json.Decoder(tuple[list[msgspec.Raw], list[msgspec.Raw]]).decode


def _entries(text: str) -> Iterator[tuple[bytes, msgspec.Raw | None]]:
    """A journal entry's keys and rows, as written (``None``: deleted)."""
    try:
        keys, rows = _raw_entry(text)
    except msgspec.DecodeError:  # a value msgspec does not read (NaN, written by json): through json
        keys, rows = json.loads(text)
        keys = [msgspec.Raw(dumps(key)) for key in keys]
        rows = [_NULL if row is None else msgspec.Raw(dumps(row)) for row in rows]
    if len(keys) != len(rows):
        raise ValueError(f"a journal entry of {len(keys)} keys holds {len(rows)} rows")
    return ((bytes(key), None if row == _NULL else row) for key, row in zip(keys, rows, strict=True))


_NULL: Final = msgspec.Raw(b"null")


def _applied(rows: list[dict[str, Any]], key_name: str, entries: list[list[Any]]) -> list[dict[str, Any]]:
    """``rows`` with the journal's ``entries`` applied in order (by ``key_name``, the primary key)."""
    try:
        by_key = {row[key_name]: row for row in rows}
        for keys, entry_rows in entries:
            for key, row in zip(keys, entry_rows, strict=True):
                if row is None:
                    by_key.pop(key, None)
                else:
                    by_key[key] = row
    except (KeyError, TypeError, ValueError) as exc:  # not rows and entries this version wrote
        raise ValueError(f"the journal does not apply to its rows ({exc!r})") from exc
    return list(by_key.values())


def _is_locked(exc: sqlite3.DatabaseError) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
