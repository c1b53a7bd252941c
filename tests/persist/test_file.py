"""The state file itself: rows read back exactly as written, and each kind of bad file told apart."""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from rxstore.persist.batch import Batch
from rxstore.persist.file import FORMAT, StateFile
from rxstore.persist.json_rows import row_text
from rxstore.protocol.errors import PersistError

ODD_ROWS: dict[Any, dict[str, Any]] = {
    "big": {"id": "big", "n": 123456789012345678901234567890, "f": 0.1},
    "nan": {"id": "nan", "f": math.nan},
    "inf": {"id": "inf", "f": -math.inf},
    "nested": {"id": "nested", "tags": ["a", {"b": None}], "meta": {"x": 1}},
    "text": {"id": "text", "title": 'quote " backslash \\ é 😀 \u2028', "none": None, "yes": True},
    7: {"id": 7, "title": "an integer key"},
}


def written(path: Path, rows: dict[Any, dict[str, Any]]) -> None:
    file = StateFile(path)
    spec = {"subset": {"topic": "posts"}, "key": "id", "record": "dict"}
    batch = Batch(
        cleared=frozenset({"post_update"}),
        rows={"post_update": {key: row_text(row) for key, row in rows.items()}},
        subs={"post_update": (spec, 3)},
        cursor_known=True,
        cursor=3,
        cursor_event="post_update",
        cursor_ts=1733580000.1234567,
        epoch="e1",
    )
    file.write(batch)
    file.close()


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def by_id(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {row["id"]: row for row in rows}


def test_rows_read_back_exactly_big_integers_nan_and_nested_values_included(tmp_path: Path) -> None:
    """Every JSON value a row may hold comes back equal, of the same type: integers past 64 bits
    (not floats), NaN and the infinities (not null), nested lists and dicts, any text."""
    written(tmp_path / "s.db", ODD_ROWS)
    file = StateFile(tmp_path / "s.db")
    loaded = file.load()
    assert file.problem is None and loaded.cursor == 3 and loaded.epoch == "e1"
    assert loaded.cursor_ts == 1733580000.1234567  # exactly: the gateway compares it with ==
    assert same(by_id(loaded.rows["post_update"]), ODD_ROWS)


def test_rows_past_sqlites_longest_string_are_read_one_by_one(tmp_path: Path) -> None:
    """A table's rows too long for one string (SQLite's length limit) are still read, row by row."""
    rows = {f"p{i}": {"id": f"p{i}", "title": "x" * 100} for i in range(50)}
    written(tmp_path / "s.db", rows)
    file = StateFile(tmp_path / "s.db")
    file._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2_000)  # the 50 rows joined are ~6,000 characters
    loaded = file.load()
    assert file.problem is None and by_id(loaded.rows["post_update"]) == rows


def test_a_truncated_file_is_set_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    """A state file cut short (a crash of the disk, a partial copy): ``corrupt``, moved aside, and
    the file opened afterwards is empty (no row, no cursor), never a partial state."""
    path = tmp_path / "s.db"
    written(path, {f"p{i}": {"id": f"p{i}", "title": "t" * 200} for i in range(2_000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    file = StateFile(path)
    loaded = file.load()
    assert file.problem is not None and file.problem.reason == "corrupt", file.problem
    assert loaded.cursor is None and not loaded.rows and not loaded.subs
    assert len(list(tmp_path.glob("s.db.corrupt-*"))) == 1 and "moved to" in str(file.problem)


def test_a_file_damaged_inside_is_set_aside_when_read_never_a_crash(tmp_path: Path) -> None:
    """Pages overwritten in the middle (the header and schema intact, so it opens): reading it
    fails, and then it is set aside and a fresh file started (``corrupt``), no exception."""
    path = tmp_path / "s.db"
    written(path, {f"p{i}": {"id": f"p{i}", "title": "t" * 200} for i in range(2_000)})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 20_000] = b"\xff" * 20_000
    path.write_bytes(bytes(data))
    file = StateFile(path)
    assert file.problem is None  # it opened
    loaded = file.load()
    assert file.problem is not None and file.problem.reason == "corrupt", file.problem
    assert loaded.cursor is None and not loaded.rows
    assert len(list(tmp_path.glob("s.db.corrupt-*"))) == 1
    file.write(Batch(cursor_known=True, cursor=9))  # the fresh file works
    file.close()
    assert StateFile(path).load().cursor == 9


def test_a_file_of_an_older_format_is_emptied_with_its_reason(tmp_path: Path) -> None:
    """A file another version wrote (``format`` not this one's): ``older_format``, its rows,
    cursor and outbox dropped, this version's format written."""
    path = tmp_path / "s.db"
    written(path, {"p1": {"id": "p1"}})
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE rxstore_meta SET v = 'rxstore-client-state/0' WHERE k = 'format'")
    file = StateFile(path)
    loaded = file.load()
    assert file.problem is not None and file.problem.reason == "older_format"
    assert loaded.cursor is None and not loaded.rows and not loaded.subs
    file.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT v FROM rxstore_meta WHERE k = 'format'").fetchone() == (FORMAT,)


def test_a_database_of_something_else_is_refused_untouched(tmp_path: Path) -> None:
    """A SQLite file with tables of its own: ``foreign``, nothing created in it."""
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(PersistError) as refused:
        StateFile(path)
    assert refused.value.reason == "foreign"
    with closing(sqlite3.connect(path)) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["invoices"]
