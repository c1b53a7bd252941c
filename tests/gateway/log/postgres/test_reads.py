"""rxstore.gateway.log.postgres.reads: rows as JSON texts are the rows, never decoded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rxstore.gateway.log.postgres.changelog import PostgresChangeLog

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

TABLE = """CREATE TABLE odd (
    id int PRIMARY KEY,
    big numeric,
    score double precision,
    note text,
    at timestamptz,
    doc jsonb,
    flag boolean,
    loose json,
    tags text[]
)"""
ROWS = [
    (
        1,
        "123456789012345678901234567890",
        "Infinity",
        'a "quoted" \\ note: é ✓',
        "2026-12-07 10:00:00+00",
        '{"k": [1, 2.5]}',
        True,
        '{"a": 1,  "a": {"b" : [1,2]}}',  # json keeps its text (a repeated key, spacing); jsonb does not
        ["x", "y z", None],
    ),
    (2, "1.50", "-Infinity", None, None, "null", False, "[]", []),
    (3, "-0.000001", 0.1, "", "1999-01-01 00:00:00.123456+00", '"s"', None, None, None),
    (4, "4", 1e300, "a float to_jsonb writes as an integer", None, None, None, None, None),
    *[(i, str(i), i / 3, f"row {i}", None, None, None, None, None) for i in range(5, 40)],
]

COLUMNS = ["id", "big", "score", "note", "at", "doc", "flag", "loose", "tags"]


@pytest.fixture
async def log(pg_dsn: str) -> AsyncIterator[PostgresChangeLog]:
    log = PostgresChangeLog(pg_dsn)
    await log.open()
    await log.execute(TABLE)
    await log.watch("odd")
    for row in ROWS:
        await log.execute(
            "INSERT INTO odd VALUES "
            "($1, $2::text::numeric, $3::text::float8, $4, $5::text::timestamptz, $6::text::jsonb, $7, "
            "$8::text::json, $9)",
            row[0],
            row[1],
            str(row[2]) if row[2] is not None else None,
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
        )
    yield log
    await log.close()


async def pages(reader: object, method: str, limit: int) -> list[object]:
    rows: list[object] = []
    more = True
    while more:
        page, more = await getattr(reader, method)("odd", limit)
        rows.extend(page)
    return rows


async def test_rows_as_text_decode_to_the_rows_fetch_gives_in_key_order(log: PostgresChangeLog) -> None:
    """Big numerics, infinities (as strings), unicode and quotes, nested jsonb and json, arrays,
    NULLs: the same values (a row's keys in the table's column order, where jsonb sorts them)."""
    async with log.snapshot_reader(["odd"]) as reader:
        texts = await pages(reader, "fetch_text", 7)
        rows = await pages(reader, "fetch", 7)
    assert all(type(text) is str for text in texts)
    decoded = [json.loads(text) for text in texts]  # type: ignore[arg-type]
    assert decoded == rows and len(rows) == len(ROWS)
    assert all(list(row) == COLUMNS for row in decoded)
    assert decoded[0]["loose"] == {"a": {"b": [1, 2]}} and decoded[0]["tags"] == ["x", "y z", None]
    assert decoded[0]["big"] == 123456789012345678901234567890 and decoded[0]["score"] == "Infinity"


async def test_reading_as_text_and_as_rows_in_turn_each_starts_from_the_first_row(
    log: PostgresChangeLog,
) -> None:
    async with log.snapshot_reader(["odd"]) as reader:
        first, more = await reader.fetch_text("odd", 5)  # type: ignore[attr-defined]
        assert more
        rows, _ = await reader.fetch("odd", 5)
        again, _ = await reader.fetch_text("odd", 5)  # type: ignore[attr-defined]
    assert [json.loads(t)["id"] for t in first] == [row["id"] for row in rows] == [1, 2, 3, 4, 5]
    assert [json.loads(t)["id"] for t in again] == [1, 2, 3, 4, 5]


async def test_floats_as_text_are_written_as_to_jsonb_writes_them(log: PostgresChangeLog) -> None:
    """Doubles (whole numbers, 1e300, tiny, infinities and NaN) and arrays of them, beside text,
    integers and booleans: row_to_json's text, with floats read as to_jsonb reads them."""
    await log.execute(
        "CREATE TABLE plain (id bigint PRIMARY KEY, name text, label varchar(20), n integer, "
        "small smallint, ok boolean, score double precision, many float8[], few real)"
    )
    await log.watch("plain")
    scores = [
        "1.5",
        "Infinity",
        "-Infinity",
        "NaN",
        None,
        "-0",
        "1e300",
        "0.1",
        "2.5e-310",
        "3",
        "1234567890123456",
        "1e16",
        "-1.5e+17",
        "1.2345e-05",
        "0.1234567890123456789",
    ]
    for i, score in enumerate(scores * 3):
        await log.execute(
            "INSERT INTO plain VALUES ($1, $2, $3, $4, $5, $6, $7::text::float8, "
            "ARRAY[$7::text::float8, 1e300, 0.5], CASE WHEN $8 THEN $7::text::real END)",
            i - 9223372036854775808 if i == 0 else i,
            None if i == 3 else f'row "{i}" é ✓ \\ \u0001',
            "v" * (i % 20),
            2147483647 if i == 1 else -i,
            i % 100,
            None if i % 3 == 0 else i % 2 == 0,
            score if i < 15 else (scores[0] if i % 15 != 3 else score),  # later pages: fewer specials
            score in ("1.5", "Infinity", "-Infinity", "NaN", "-0", "0.1", "3", "1.2345e-05"),  # fit a real
        )
    async with log.snapshot_reader(["plain"]) as reader:
        texts = await pages_of(reader, "plain", "fetch_text", 7)
        rows = await pages_of(reader, "plain", "fetch", 7)
    decoded = [json.loads(text) for text in texts]
    assert decoded == rows and len(rows) == 45
    assert [row["score"] for row in decoded[:5]] == [1.5, "Infinity", "-Infinity", "NaN", None]
    assert [type(row["score"]) for row in decoded[6:12]] == [int, float, float, int, int, int]
    assert [type(row["score"]) for row in rows[6:12]] == [int, float, float, int, int, int]
    assert decoded[0]["id"] == -9223372036854775808 and decoded[1]["n"] == 2147483647


async def pages_of(reader: object, topic: str, method: str, limit: int) -> list[Any]:
    rows: list[Any] = []
    more = True
    while more:
        page, more = await getattr(reader, method)(topic, limit)
        rows.extend(page)
    return rows


async def test_a_table_without_floats_is_read_as_row_to_json_into_the_same_values(
    log: PostgresChangeLog,
) -> None:
    """Numerics, timestamps, jsonb and json, arrays (no float: row_to_json writes floats otherwise
    than to_jsonb): the server's row_to_json text, keys in column order, the same values."""
    await log.execute(
        "CREATE TABLE nofloat AS SELECT id, big, note, at, doc, flag, loose, tags FROM odd; "
        "ALTER TABLE nofloat ADD PRIMARY KEY (id)"
    )
    await log.watch("nofloat")
    async with log.snapshot_reader(["nofloat"]) as reader:
        texts = await pages_of(reader, "nofloat", "fetch_text", 7)
        rows = await pages_of(reader, "nofloat", "fetch", 7)
    decoded = [json.loads(text) for text in texts]
    assert decoded == rows and len(rows) == len(ROWS)
    assert all(list(row) == [c for c in COLUMNS if c != "score"] for row in decoded)
    assert decoded[0]["loose"] == {"a": {"b": [1, 2]}} and decoded[0]["big"] == 123456789012345678901234567890
