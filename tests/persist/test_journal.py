"""The state file's journal: changes appended, read back applied in order, folded past its bound.

On real SQLite files: every load is compared with a model of the rows written (a dict per
subscription), across updates, deletes, a key deleted and written again in a later write,
a subscription's snapshot in the middle, folds, and writes that fail half-way.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rxstore.persist.file as state_file
from rxstore.persist.batch import Batch
from rxstore.persist.file import StateFile
from rxstore.persist.json_rows import dumps, row_text
from tests.disks import fill, small_filesystem
from tests.persist.test_file import ODD_ROWS, same

SPEC: dict[str, Any] = {"subset": {"topic": "posts"}, "key": "id", "record": "dict"}
SUBS: dict[str, tuple[dict[str, Any], int | None]] = {"posts": (SPEC, 1), "notes": (SPEC, 1)}

Model = dict[str, dict[Any, dict[str, Any] | None]]


class Writer:
    """Writes batches to a state file and keeps the model of what the file should hold."""

    def __init__(self, file: StateFile) -> None:
        self.file = file
        self.model: dict[str, dict[Any, dict[str, Any]]] = {sub: {} for sub in SUBS}
        self.cursor = 0

    def batch(self, rows: Model, cleared: frozenset[str] = frozenset()) -> Batch:
        return Batch(
            cleared=cleared,
            rows={
                sub: {k: None if r is None else row_text(r) for k, r in c.items()} for sub, c in rows.items()
            },
            subs=SUBS,
            cursor_known=True,
            cursor=self.cursor + 1,
            epoch="e1",
        )

    def write(self, rows: Model, cleared: frozenset[str] = frozenset()) -> None:
        """Write one batch; the model follows it once the write returned."""
        self.file.write(self.batch(rows, cleared))
        self.cursor += 1
        for sub in cleared:
            self.model[sub] = {}
        for sub, changed in rows.items():
            for key, row in changed.items():
                if row is None:
                    self.model[sub].pop(key, None)
                else:
                    self.model[sub][key] = row

    def check(self, file: StateFile | None = None) -> None:
        """The file's rows (journal applied) and cursor are the model's."""
        loaded = (file or self.file)._load()
        assert loaded.cursor == self.cursor
        for sub in SUBS:
            rows = loaded.rows.get(sub, [])
            assert len(rows) == len({row["id"] for row in rows}), f"{sub}: a key twice"
            assert {row["id"]: row for row in rows} == self.model[sub], sub


def journal(file: StateFile) -> int:
    """The journal's entries (writes), as on file."""
    return int(file._db.execute("SELECT count(*) FROM rxstore_journal").fetchone()[0])


def row(key: Any, n: int) -> dict[str, Any]:
    return {"id": key, "title": f"post {key}", "n": n}


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    file = StateFile(tmp_path / "s.db")
    yield Writer(file)
    file.close()


def test_a_load_is_the_rows_written_across_batches_updates_deletes_and_reinserts(
    tmp_path: Path, writer: Writer
) -> None:
    """Snapshots, then updates, deletes, a key deleted in one write and written again in a later one,
    a key written again then deleted, and one subscription's snapshot in the middle (its journal
    dropped): after each write, and after a reopen, the file reads back as the model."""
    writer.write(
        {"posts": {i: row(i, 0) for i in range(10)}, "notes": {f"n{i}": row(f"n{i}", 0) for i in range(5)}},
        cleared=frozenset(SUBS),
    )
    assert journal(writer.file) == 0
    steps: list[tuple[Model, frozenset[str]]] = [
        ({"posts": {1: row(1, 1), 2: None, 10: row(10, 1)}, "notes": {"n0": None}}, frozenset()),
        ({"posts": {2: row(2, 2), 1: row(1, 2), 3: None}}, frozenset()),  # 2 back, written again
        ({"posts": {2: None, 10: None}, "notes": {"n0": row("n0", 3)}}, frozenset()),
        ({"notes": {"n9": row("n9", 4), "n1": row("n1", 4)}}, frozenset({"notes"})),  # a snapshot
        ({"posts": {3: row(3, 5), 4: None}, "notes": {"n1": None, "n2": row("n2", 5)}}, frozenset()),
        ({"posts": {4: row(4, 6), 4.5: row(4.5, 6)}}, frozenset()),
    ]
    for rows, cleared in steps:
        writer.write(rows, cleared)
        writer.check()
    assert journal(writer.file) == 8 - 2  # 8 entries appended; the snapshot of notes dropped its 2
    writer.file.close()
    writer.file = StateFile(tmp_path / "s.db")
    writer.check()
    assert writer.model["posts"].keys() == {0, 1, 3, 4, 4.5, 5, 6, 7, 8, 9}
    assert writer.model["notes"].keys() == {"n2", "n9"}


def test_random_batches_fold_at_the_bound_and_read_back_the_same(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 seeded random writes over 60 keys of two subscriptions (updates, deletes, keys coming
    back, now and then a snapshot), with the journal's bound at 40 entries: each write reads
    back as the model; a write past the bound folds the journal into the rows (the journal
    empty, ``rxstore_rows`` alone the model) and reads back the same."""
    monkeypatch.setattr(state_file, "JOURNAL_MIN", 40)
    rng = random.Random(26)
    writer.write({sub: {i: row(i, 0) for i in range(30)} for sub in SUBS}, cleared=frozenset(SUBS))
    folds = 0
    for n in range(1, 300):
        cleared = frozenset(sub for sub in SUBS if rng.random() < 0.02)
        rows: Model = {}
        for sub in SUBS:
            if sub in cleared:
                rows[sub] = {i: row(i, n) for i in rng.sample(range(60), rng.randrange(40))}
            elif rng.random() < 0.8:
                size = rng.randrange(1, 12)
                rows[sub] = {
                    i: None if rng.random() < 0.3 else row(i, n) for i in rng.sample(range(60), size)
                }
        entries = sum(writer.file._counted()[1].values())
        bound = state_file.journal_bound(sum(len(rows) for rows in writer.model.values()))
        writer.write(rows, cleared)
        writer.check()
        written = sum(len(c) for sub, c in rows.items() if sub not in cleared)
        if journal(writer.file) == 0 and entries + written > bound:
            folds += 1
            on_file = writer.file._db.execute("SELECT sub, key, row FROM rxstore_rows").fetchall()
            assert {(sub, key): row for sub, key, row in on_file} == {
                (sub, dumps(key)): row_text(r)
                for sub, rows in writer.model.items()
                for key, r in rows.items()
            }
    assert folds >= 5


def test_odd_values_go_through_the_journal_and_a_fold_exactly(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written as journal entries (big integers, NaN, nested values, any text, an integer key)
    read back equal, of the same type; folded into the rows (NaN read by :mod:`json`), the same."""
    writer.write({"posts": {"x": row("x", 0)}}, cleared=frozenset({"posts"}))
    writer.file.write(writer.batch({"posts": ODD_ROWS}))  # type: ignore[dict-item]
    writer.cursor += 1
    loaded = writer.file._load()
    assert same({r["id"]: r for r in loaded.rows["posts"]}, {"x": row("x", 0), **ODD_ROWS})
    monkeypatch.setattr(state_file, "JOURNAL_MIN", 0)
    writer.file.write(writer.batch({"posts": {"x": None}}))
    assert journal(writer.file) == 0
    loaded = writer.file._load()
    assert same({r["id"]: r for r in loaded.rows["posts"]}, ODD_ROWS)


def test_rows_past_sqlites_longest_string_are_read_one_by_one_with_the_journal(writer: Writer) -> None:
    """The fallback for a table's rows too long for one string applies the journal too."""
    writer.write(
        {"posts": {f"p{i}": row(f"p{i}", 0) | {"t": "x" * 100} for i in range(50)}}, frozenset({"posts"})
    )
    writer.write({"posts": {"p1": None, "p2": row("p2", 1), "p99": row("p99", 1)}})
    writer.write({"posts": {"p1": row("p1", 2), "p2": None}})
    writer.file._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2_000)  # the rows joined are ~7,000 characters
    writer.check()


def test_a_write_failing_half_way_leaves_the_rows_journal_and_cursor_as_they_were(writer: Writer) -> None:
    """A batch whose journal entry is appended, then fails (a state that is not JSON): nothing of it is
    on file, the rows (journal applied) and the cursor are the last write's; the next write goes on."""
    writer.write({"posts": {1: row(1, 0), 2: row(2, 0)}}, frozenset({"posts"}))
    writer.write({"posts": {1: row(1, 1)}})
    bad = writer.batch({"posts": {2: None, 3: row(3, 2)}})
    bad = Batch(rows=bad.rows, subs=bad.subs, states={"s": object()}, cursor_known=True, cursor=99)
    with pytest.raises(TypeError):
        writer.file.write(bad)
    assert journal(writer.file) == 1
    writer.check()
    writer.write({"posts": {2: None}})
    writer.check()


def test_a_full_disk_during_a_fold_leaves_the_file_as_it_was_and_the_write_goes_through_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that folds the journal on a full disk (a 4 MiB tmpfs filled to the last byte) fails:
    the rows (journal applied), the journal and the cursor on file are the last write's; written
    again once the disk has room, it goes through, folded; a reopen reads the model."""
    monkeypatch.setattr(state_file, "JOURNAL_MIN", 300)
    with small_filesystem(tmp_path / "small", "4m") as disk:
        file = StateFile(disk / "s.db")
        writer = Writer(file)
        snapshot: Model = {"posts": {i: row(i, 0) | {"t": "x" * 500} for i in range(600)}}
        writer.write(snapshot, frozenset({"posts"}))
        for n in range(1, 4):
            writer.write({"posts": {i: None if i % 7 == 0 else row(i, n) for i in range(n, 600, 7)}})
        file._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        entries = journal(file)
        filler = fill(disk)
        folding: Model = {"posts": {i: row(i, 9) | {"t": "y" * 500} for i in range(600)}}
        with pytest.raises(sqlite3.OperationalError, match="full"):
            writer.write(folding)  # past the bound: this write folds
        assert journal(file) == entries
        writer.check()
        filler.unlink()
        writer.write(folding)
        assert journal(file) == 0
        writer.check()
        file.close()
        again = StateFile(disk / "s.db")
        try:
            writer.check(again)
        finally:
            again.close()


def test_a_journal_of_a_subscription_not_on_file_is_not_applied_nor_taken_for_damage(tmp_path: Path) -> None:
    """A journal naming a subscription the file no longer lists (no key to apply it by): the file is
    read (its other rows, its outbox), not set aside as damaged; the root then finds the
    subscriptions changed and starts afresh (tests/persist/test_persister.py)."""
    file = StateFile(tmp_path / "s.db")
    writer = Writer(file)
    writer.write({"posts": {1: row(1, 0)}}, frozenset({"posts"}))
    writer.write({"posts": {1: row(1, 1)}, "notes": {"a": row("a", 1)}})
    file._db.execute("DELETE FROM rxstore_subs WHERE sub = 'notes'")
    loaded = file.load()
    assert file.problem is None and loaded.cursor == 2
    assert loaded.rows["posts"] == [row(1, 1)] and "notes" not in loaded.subs
    file.close()
