"""rxstore.gateway.log.postgres.reads: rows as JSON texts are the rows, never decoded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

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
    *[(i, str(i), i / 3, f"row {i}", None, None, None, None, None) for i in range(4, 40)],
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
    assert all(list(row) == COLUMNS for row in decoded)  # type: ignore[call-overload]
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
