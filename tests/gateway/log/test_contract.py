"""The ChangeLog contract: every test runs against SQLiteChangeLog and PostgresChangeLog alike.

What a gateway relies on from any change log: captured rows in seq order,
reads that page and resume, watch/snapshot errors, trimming a prefix, wake-ups,
and mutations applied once per user. Backend-specific behaviour (WAL files,
schema migrations, the PostgreSQL sequencer, restarts) stays in
log/sqlite/test_changelog.py and log/postgres/test_changelog.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import attrs
import pytest

from rxstore.gateway.log.contract import AppliedMutation, ChangeLog
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.log.postgres.reads import subset_rows_sql
from rxstore.gateway.log.sqlite.reads import rows_sql as sqlite_rows_sql
from rxstore.gateway.log.subset_sql import Dialect, where_sql
from rxstore.protocol.errors import NotConnected
from rxstore.protocol.events import Op
from rxstore.protocol.subsets import Subset, terms_of
from tests.gateway.placeholders import placeholders

pytestmark = pytest.mark.timeout(60)


@attrs.frozen
class Backend:
    """How one database spells what the contract needs."""

    name: str
    real: str
    """The column type of an exact double."""
    unique_violation: type[Exception]

    def sql(self, text: str) -> str:
        """``text`` with its ``?`` placeholders as this database wants them."""
        return placeholders(text, postgres=self.name != "sqlite")


SQLITE = Backend("sqlite", "REAL", sqlite3.IntegrityError)
POSTGRES = Backend("postgresql", "DOUBLE PRECISION", asyncpg.UniqueViolationError)


@pytest.fixture(params=[SQLITE, pytest.param(POSTGRES, marks=pytest.mark.postgres)], ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def url(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: a new SQLite file, or a fresh PostgreSQL database (``pg_dsn``)."""
    if backend is SQLITE:
        return f"sqlite:///{tmp_path / 'app.db'}"
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def log(url: str, backend: Backend) -> AsyncIterator[ChangeLog]:
    """An open log watching ``posts (id, title, likes, score)``."""
    log = open_change_log(url)
    await log.open()
    await log.execute(
        f"CREATE TABLE posts (id TEXT PRIMARY KEY, title TEXT NOT NULL, likes INTEGER, score {backend.real})"
    )
    await log.watch("posts")
    yield log
    await log.close()


async def insert(log: ChangeLog, backend: Backend, post_id: str, title: str = "t") -> None:
    await log.execute(backend.sql("INSERT INTO posts (id, title) VALUES (?, ?)"), post_id, title)


async def test_calls_on_a_log_that_is_not_open_raise_not_connected(url: str) -> None:
    log = open_change_log(url)
    assert not log.healthy
    with pytest.raises(NotConnected):
        await log.read(0)


async def test_open_and_close_are_idempotent_and_a_new_log_is_empty(url: str) -> None:
    log = open_change_log(url)
    await log.open()
    await log.open()
    try:
        assert log.healthy
        assert (await log.head(), await log.horizon(), await log.read(0)) == (0, 0, [])
    finally:
        await log.close()
        await log.close()
    assert not log.healthy
    with pytest.raises(NotConnected):
        await log.head()


async def test_insert_update_delete_are_captured_in_order_with_rows(log: ChangeLog, backend: Backend) -> None:
    before = time.time()
    sql = backend.sql
    await log.execute(sql("INSERT INTO posts VALUES (?, ?, ?, ?)"), "p1", "Hello", 0, 1.5)
    await log.execute(sql("UPDATE posts SET title = ?, likes = likes + 1 WHERE id = ?"), "Hi", "p1")
    await log.execute("INSERT INTO posts (id, title) VALUES ('p2', 'Other')")
    await log.execute(sql("DELETE FROM posts WHERE id = ?"), "p1")
    after = time.time()

    changes = await log.read(0)
    assert [(c.seq, c.topic, c.op) for c in changes] == [
        (1, "posts", Op.INSERT),
        (2, "posts", Op.UPDATE),
        (3, "posts", Op.INSERT),
        (4, "posts", Op.DELETE),
    ]
    p1 = {"id": "p1", "title": "Hello", "likes": 0, "score": 1.5}
    p1_v2 = {"id": "p1", "title": "Hi", "likes": 1, "score": 1.5}
    assert changes[0].record == p1 and changes[0].old is None
    assert changes[1].record == p1_v2 and changes[1].old == p1
    assert changes[2].record == {"id": "p2", "title": "Other", "likes": None, "score": None}
    assert changes[3].record is None and changes[3].old == p1_v2
    assert all(c.mutation is None for c in changes)
    for change in changes:
        assert before - 0.01 <= change.ts <= after + 0.01
    assert [c.seq for c in await log.read(2)] == [3, 4]
    assert [c.seq for c in await log.read(0, limit=2)] == [1, 2]
    assert [c.seq for c in await log.read(0, limit=10, max_bytes=1)] == [1]  # one change at least
    assert await log.head() == 4


async def test_a_byte_bounded_read_is_a_prefix_with_deletes_in_it(log: ChangeLog, backend: Backend) -> None:
    """A DELETE's row (``record`` null) counts its ``old``: a page that starts with two DELETEs and
    an UPDATE came back as [1, 3] on PostgreSQL (the second DELETE's running size was NULL), and a
    tailer that read it skipped seq 2 for every client (the fault suite saw it as one lost change)."""
    sql = backend.sql
    for key in ("a", "b", "c"):
        await log.execute(sql("INSERT INTO posts (id, title) VALUES (?, 't')"), key)
    await log.execute(sql("DELETE FROM posts WHERE id = ?"), "a")  # seq 4
    await log.execute(sql("DELETE FROM posts WHERE id = ?"), "b")  # seq 5
    await log.execute(sql("UPDATE posts SET title = 'u' WHERE id = ?"), "c")  # seq 6
    for max_bytes in (1, 100, 200, 400, 10_000):
        seqs = [c.seq for c in await log.read(3, limit=10, max_bytes=max_bytes)]
        assert seqs == list(range(4, 4 + len(seqs))), (max_bytes, seqs)
    assert [c.seq for c in await log.read(3, limit=10, max_bytes=10_000)] == [4, 5, 6]


async def test_doubles_are_captured_and_snapshotted_exactly(log: ChangeLog, backend: Backend) -> None:
    """Not rounded to 15 digits (SQLite json_object alone writes 1795664611.49337 for 1795664611.4933743)."""
    values = [time.time(), 1 / 3, 0.1, 2.0**53, -1234.5, 2.5e-7, 1e-300]
    for i, value in enumerate(values):
        await log.execute(
            backend.sql("INSERT INTO posts (id, title, score) VALUES (?, 't', ?)"), f"p{i}", value
        )
    changes = await log.read(0)
    assert [c.record["score"] for c in changes if c.record] == values
    snap = await log.snapshot(["posts"])
    assert [r["score"] for r in snap.tables["posts"]] == values  # in key order p0..p6
    assert snap.seq == len(values)


async def test_watch_rejects_unknown_internal_and_keyless_tables_and_is_idempotent(log: ChangeLog) -> None:
    with pytest.raises(ValueError, match="no such table"):
        await log.watch("nope")
    with pytest.raises(ValueError, match="no column 'uuid'"):
        await log.watch("posts", primary_key="uuid")
    with pytest.raises(ValueError, match="internal"):
        await log.watch("rxstore_changes")
    with pytest.raises(ValueError, match="empty"):
        await log.watch("")
    await log.watch("posts")
    await log.execute("INSERT INTO posts (id, title) VALUES ('p1', 'a')")
    assert len(await log.read(0)) == 1  # one change per write despite watching twice


async def test_snapshot_of_an_unknown_table_is_an_error(log: ChangeLog) -> None:
    with pytest.raises(ValueError, match="no such table"):
        await log.snapshot(["nope"])
    with pytest.raises(ValueError, match="no such table"):
        async with log.snapshot_reader(["posts", "nope"]):
            pass


async def test_a_snapshot_reader_pages_rows_in_key_order_at_one_seq(log: ChangeLog, backend: Backend) -> None:
    for i in (3, 1, 2):
        await insert(log, backend, f"p{i}")
    assert await log.head() == 3  # PostgreSQL: sequenced now, so the snapshot has nothing to skip
    async with log.snapshot_reader(["posts"]) as reader:
        await insert(log, backend, "p4")  # after the snapshot began: not in it
        first, more = await reader.fetch("posts", 2)
        rest, more_after = await reader.fetch("posts", 2)
    assert reader.seq == 3 and reader.skip == frozenset()
    assert [r["id"] for r in first] == ["p1", "p2"] and more
    assert [r["id"] for r in rest] == ["p3"] and not more_after


# -- live-query subsets (issue 12) ----------------------------------------------

EXTRA_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "sqlite": [
        ("VARCHAR(20)", "text"),
        ("BIGINT", "integer"),
        ("DOUBLE", "real"),
        ("NUMERIC(10, 2)", "real"),
        ("BOOLEAN", "boolean"),
        ("BLOB", "other"),
        ("", "other"),
    ],
    "postgresql": [
        ("varchar(20)", "text"),
        ("smallint", "integer"),
        ("numeric(10, 2)", "real"),
        ("boolean", "boolean"),
        ("bytea", "other"),
        ("real", "other"),
        ("char(3)", "other"),
        ("text[]", "other"),
        ("timestamptz", "other"),
    ],
}
"""Declared types beyond ``posts``' and the kind ``columns()`` gives each."""


async def test_columns_gives_each_column_of_a_watched_table_its_kind_in_table_order(
    log: ChangeLog, backend: Backend
) -> None:
    assert await log.columns("posts") == {"id": "text", "title": "text", "likes": "integer", "score": "real"}
    extra = EXTRA_COLUMNS[backend.name]
    declared = ", ".join(f"c{n} {kind}" for n, (kind, _) in enumerate(extra))
    await log.execute(f"CREATE TABLE extra (id INTEGER PRIMARY KEY, {declared})")
    with pytest.raises(ValueError, match="'extra' is not a watched table"):
        await log.columns("extra")
    await log.watch("extra")
    kinds = {f"c{n}": kind for n, (_, kind) in enumerate(extra)}
    assert await log.columns("extra") == {"id": "integer"} | kinds
    with pytest.raises(ValueError, match="'nope' is not a watched table"):
        await log.columns("nope")


async def test_a_snapshot_reader_pages_subsets_in_key_order_one_after_the_other(
    log: ChangeLog, backend: Backend
) -> None:
    sql = backend.sql("INSERT INTO posts (id, title, likes) VALUES (?, 't', ?)")
    for i, likes in ((6, 5), (1, 3), (4, None), (2, 9), (5, 1), (3, 4)):
        await log.execute(sql, f"p{i}", likes)
    popular = Subset("posts", terms_of([("likes", ">=", 3)]))
    unliked = Subset("posts", terms_of({"likes": None}))
    async with log.snapshot_reader(["posts"]) as reader:
        pages = [await reader.fetch("posts", 2, popular) for _ in range(2)]
        other = await reader.fetch("posts", 10, unliked)
        again = await reader.fetch("posts", 10, popular)  # the last read ended it: from the first row
        everything = await reader.fetch("posts", 10)
        with pytest.raises(ValueError, match="a subset of 'comments' cannot be read from 'posts'"):
            await reader.fetch("posts", 10, Subset("comments"))
    paged = [([r["id"] for r in rows], more) for rows, more in pages]
    assert paged == [(["p1", "p2"], True), (["p3", "p6"], False)]
    assert [r["id"] for r in other[0]] == ["p4"] and not other[1]
    assert [r["id"] for r in again[0]] == ["p1", "p2", "p3", "p6"]
    assert [r["id"] for r in everything[0]] == ["p1", "p2", "p3", "p4", "p5", "p6"]
    assert everything[0][0] == {"id": "p1", "title": "t", "likes": 3, "score": None}  # rows stay whole


async def test_subset_values_are_parameters_never_sql_text(log: ChangeLog, backend: Backend) -> None:
    hostile = "x' OR 1=1 --"
    quoted_title = 'it\'s "quoted" $1 ?'
    for post_id, title in (("p1", "plain"), ("p2", quoted_title), ("p3", hostile + "!")):
        await insert(log, backend, post_id, title)
    async with log.snapshot_reader(["posts"]) as reader:
        none, _ = await reader.fetch("posts", 10, Subset("posts", terms_of({"title": hostile})))
        quoted, _ = await reader.fetch("posts", 10, Subset("posts", terms_of({"title": [quoted_title]})))
        ranged, _ = await reader.fetch("posts", 10, Subset("posts", terms_of([("title", ">", hostile)])))
    assert none == []
    assert [r["id"] for r in quoted] == ["p2"]
    assert [r["id"] for r in ranged] == ["p3"]  # only the title that starts with the hostile text
    condition, params = where_sql(Subset("posts", terms_of({"title": hostile})), _dialect(backend))
    assert hostile not in condition and params == [hostile]


def _dialect(backend: Backend) -> Dialect:
    return "sqlite" if backend is SQLITE else "postgres"


async def _plan(log: ChangeLog, backend: Backend, url: str, subset: Subset) -> str:
    """The plan of the query a snapshot reader runs for ``subset`` (PostgreSQL: no sequential scans)."""
    if backend is SQLITE:
        sql, params = sqlite_rows_sql("posts", "id", subset)
        return "\n".join(str(row["detail"]) for row in await log.fetch(f"EXPLAIN QUERY PLAN {sql}", *params))
    sql, params = subset_rows_sql("posts", {"posts": "id"}, subset)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET enable_seqscan = off")
        return "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {sql}", *params))
    finally:
        await conn.close()


async def test_a_subset_snapshot_uses_the_index_of_an_equality_or_in_term(
    log: ChangeLog, backend: Backend, url: str
) -> None:
    await log.execute("CREATE INDEX posts_likes ON posts (likes)")
    sql = backend.sql("INSERT INTO posts (id, title, likes) VALUES (?, 't', ?)")
    for i in range(200):
        await log.execute(sql, f"p{i:03}", i % 50)
    for where in ({"likes": 7}, {"likes": [7, 8]}):
        plan = await _plan(log, backend, url, Subset("posts", terms_of(where)))
        assert "posts_likes" in plan, plan
        assert ("USING INDEX posts_likes" if backend is SQLITE else "Index") in plan, plan
    async with log.snapshot_reader(["posts"]) as reader:
        rows, _ = await reader.fetch("posts", 100, Subset("posts", terms_of({"likes": [7, 8]})))
    assert [r["id"] for r in rows] == ["p007", "p008", "p057", "p058", "p107", "p108", "p157", "p158"]


async def test_trim_by_rows_and_age_removes_a_prefix_and_sets_horizon(
    log: ChangeLog, backend: Backend
) -> None:
    for i in range(10):
        await insert(log, backend, f"p{i}")
    assert await log.trim() == 0
    assert await log.trim(max_rows=4) == 6
    assert await log.horizon() == 6
    assert [c.seq for c in await log.read(0)] == [7, 8, 9, 10]
    assert await log.trim(max_rows=4) == 0
    assert await log.horizon() == 6

    # Age: make 7, 8 and 10 an hour old; 9 is young, so 9 and everything after stay.
    await log.execute("UPDATE rxstore_changes SET ts = ts - 3600 WHERE seq IN (7, 8, 10)")
    assert await log.trim(max_age=60) == 2
    assert await log.horizon() == 8
    assert [c.seq for c in await log.read(0)] == [9, 10]

    assert await log.trim(max_age=0) == 2  # everything is older than 0 s
    assert await log.read(0) == []
    assert await log.horizon() == 10
    assert await log.head() == 10  # the head survives an empty log
    await insert(log, backend, "next")
    assert [c.seq for c in await log.read(10)] == [11]
    with pytest.raises(ValueError, match="max_rows"):
        await log.trim(max_rows=-1)


async def test_execute_wakes_a_waiting_tailer_at_once(log: ChangeLog, backend: Backend) -> None:
    await log.read(0)
    waiter = asyncio.create_task(log.wait(10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    await insert(log, backend, "p1")
    await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 2  # not the 10 s timeout
    assert len(await log.read(0)) == 1


async def test_wait_times_out_when_nothing_happens(log: ChangeLog) -> None:
    await log.read(0)
    started = time.monotonic()
    await log.wait(0.2)
    assert 0.18 <= time.monotonic() - started < 3


async def test_fetch_returns_rows_as_dicts(log: ChangeLog, backend: Backend) -> None:
    await insert(log, backend, "p1", "a")
    rows = await log.fetch(backend.sql("SELECT id, title FROM posts WHERE id = ?"), "p1")
    assert rows == [{"id": "p1", "title": "a"}]


async def test_a_failed_execute_rolls_back_and_logs_nothing(log: ChangeLog, backend: Backend) -> None:
    await insert(log, backend, "p1", "a")
    with pytest.raises(backend.unique_violation):
        await insert(log, backend, "p1", "dup")
    await insert(log, backend, "p2", "b")
    assert [c.seq for c in await log.read(0)] == [1, 2]


async def test_apply_mutation_runs_once_per_user_and_its_changes_carry_the_id(
    log: ChangeLog, backend: Backend
) -> None:
    await log.execute("INSERT INTO posts (id, title) VALUES ('p0', 'plain')")
    statements = [
        (backend.sql("INSERT INTO posts (id, title) VALUES (?, ?)"), ("p1", "a")),
        (backend.sql("UPDATE posts SET likes = 1 WHERE id = ?"), ["p1"]),
    ]
    await log.read(0)
    waiter = asyncio.create_task(log.wait(10))
    assert await log.apply_mutation("m1", "alice", statements) is True
    await asyncio.wait_for(waiter, 5)  # tailers are woken
    assert await log.apply_mutation("m1", "alice", statements) is False  # nothing run
    assert await log.apply_mutation("m1", "bob", [("DELETE FROM posts WHERE id = 'p0'", ())]) is True
    await insert(log, backend, "after")  # a later plain write carries no mutation (nothing leaks)
    changes = await log.read(0)
    assert [(c.seq, c.op, c.mutation) for c in changes] == [
        (1, Op.INSERT, None),
        (2, Op.INSERT, "m1"),
        (3, Op.UPDATE, "m1"),
        (4, Op.DELETE, "m1"),
        (5, Op.INSERT, None),
    ]
    assert changes[1].to_payload()["mutation"] == "m1"


async def test_a_mutation_keeps_its_fingerprint_and_result(log: ChangeLog) -> None:
    statements: list[Any] = []
    assert await log.applied_mutation("m1", "alice") is None
    assert await log.apply_mutation(
        "m1", "alice", statements, fingerprint="f1", result={"id": "p1", "n": [1]}
    )
    assert await log.apply_mutation("m2", "alice", statements, result=b"not json")  # kept as null
    assert await log.applied_mutation("m1", "alice") == AppliedMutation("f1", {"id": "p1", "n": [1]})
    assert await log.applied_mutation("m2", "alice") == AppliedMutation("", None)
    assert await log.applied_mutation("m1", "bob") is None


async def test_a_failed_mutation_keeps_nothing_and_can_be_retried(log: ChangeLog, backend: Backend) -> None:
    await insert(log, backend, "taken")
    bad = [
        ("INSERT INTO posts (id, title) VALUES ('p1', 'a')", ()),
        ("INSERT INTO posts (id, title) VALUES ('taken', 'dup')", ()),
    ]
    with pytest.raises(backend.unique_violation):
        await log.apply_mutation("m1", "alice", bad)
    assert [r["id"] for r in await log.fetch("SELECT id FROM posts")] == ["taken"]
    assert await log.applied_mutation("m1", "alice") is None
    assert await log.apply_mutation("m1", "alice", bad[:1]) is True
    assert [(c.seq, c.mutation) for c in await log.read(0)] == [(1, None), (2, "m1")]


async def test_trimming_by_age_forgets_old_mutation_ids(log: ChangeLog) -> None:
    assert await log.apply_mutation("m1", "alice", [], result=1)
    await log.execute("UPDATE rxstore_mutations SET applied_at = applied_at - 3600")
    assert await log.apply_mutation("m2", "alice", [], result=2)
    await log.trim(max_age=60)
    assert await log.applied_mutation("m1", "alice") is None
    assert await log.applied_mutation("m2", "alice") == AppliedMutation("", 2)
