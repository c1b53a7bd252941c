"""Benchmark 8: PostgreSQL capture, what it costs users' own writes (issue 14).

A throwaway PostgreSQL 15 cluster (tests/services.py; ``fsync=off``, ``synchronous_commit=off``,
``wal_level=logical`` for every mode, plain included). Users' writes are upserts of
``posts(id text primary key, title text, body text, likes int)`` with a 200-byte body, over
10,000 keys written once before the clock starts, by asyncpg connections (one per writer) in this
process, for a fixed time: 1 writer x 1 row per transaction, 1 writer x 100 rows per transaction
(``executemany`` in a transaction), 8 writers x 1 row per transaction. Modes, in the same run, each
on a fresh database:

* ``a``: plain, no capture (the baseline);
* ``b``: rxstore's trigger capture (``PostgresChangeLog``, ``capture="trigger"`` when it takes the
  keyword), read concurrently by a gateway-like process (``log.read(cursor, limit=1000)`` in a loop,
  as the gateway's tailer does, so changes are sequenced as in production);
* ``c``: rxstore's WAL capture (``capture="wal"``) read the same way; only once rxstore has it;
* ``d``: peer, logical decoding by hand as the WAL-reading systems do (Supabase Realtime, Electric,
  Debezium): ``REPLICA IDENTITY FULL`` and a ``wal2json`` slot decoded concurrently by
  ``pg_logical_slot_get_changes`` in a loop (benchmarks/_capture.py);
* ``e``: peer, the same slot decoded only after each timed run: what the write path alone pays
  (``REPLICA IDENTITY FULL``, the slot's extra WAL), without the decoder's CPU beside it.

The capture runs in its own process (benchmarks/_capture.py), as a gateway would. After each timed
run the capture is given up to 30 s to catch up (else the benchmark fails): "caught up" is how long
that took after the writers stopped, "captured" the share of the written rows it saw. Full runs
do three rounds of 2 s per cell (a b c d, then d c b a, then a b c d: a machine busy with other
work weighs on every mode alike) and report rows/s over all three; ``--quick`` one round of 1 s.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks._capture import capture_keyword
from benchmarks._common import Output, Table
from benchmarks._gateway import Process

KEYS = 10_000
BODY = 200
CATCH_UP = 30.0
"""Seconds the capture may take to catch up after a timed run (the benchmark fails past them)."""
WAL2JSON = Path("/usr/lib/postgresql/15/lib/wal2json.so")
SETTINGS = {
    "synchronous_commit": "off",
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
}
CREATE = "CREATE TABLE posts (id text PRIMARY KEY, title text, body text, likes int)"
UPSERT = (
    "INSERT INTO posts (id, title, body, likes) VALUES ($1, $2, $3, 0) "
    "ON CONFLICT (id) DO UPDATE SET title = excluded.title, body = excluded.body, likes = posts.likes + 1"
)
PREFILL = (
    "INSERT INTO posts (id, title, body, likes) "
    "SELECT 'p' || x, 'post ' || x, repeat('b', $1), 0 FROM generate_series(0, $2 - 1) x"
)


@dataclass(frozen=True)
class Setup:
    """Writers and the rows of each of their transactions."""

    key: str
    label: str
    writers: int
    per_tx: int


SETUPS = (
    Setup("1x1", "1 writer x 1 row/tx", 1, 1),
    Setup("1x100", "1 writer x 100 rows/tx", 1, 100),
    Setup("8x1", "8 writers x 1 row/tx", 8, 1),
)


@dataclass(frozen=True)
class Mode:
    """How the writes are captured: ``capture`` names benchmarks/_capture.py's mode (``""``: none)."""

    key: str
    label: str
    capture: str
    peer: bool = False


MODES = (
    Mode("a", "plain (no capture)", ""),
    Mode("b", "trigger capture (rxstore today)", "trigger"),
    Mode("c", 'WAL capture (rxstore, capture="wal")', "wal"),
    Mode("d", "peer: wal2json slot decoded by hand", "slot", True),
    Mode("e", "peer: the same slot, decoded after the writes", "slot-after", True),
)


@dataclass
class Cell:
    """What one mode and setup measured over the rounds."""

    rows: int = 0
    seconds: float = 0.0
    captured: int = 0
    catch_up: list[float] = field(default_factory=list)
    """Seconds the capture took to catch up after each run."""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class CaptureProcess(Process):
    """A ``benchmarks._capture`` process: the capture of one database, read concurrently."""

    module = "benchmarks._capture"


def _body(n: int) -> str:
    head = f"{n:012d} "
    return head + "x" * (BODY - len(head))


class Start:
    """Writers connect and prepare first; the clock starts when all of them are ready."""

    def __init__(self, writers: int) -> None:
        self.waiting = writers
        self.ready = asyncio.Event()
        self.go = asyncio.Event()
        self.deadline = 0.0

    async def wait(self) -> None:
        self.waiting -= 1
        if not self.waiting:
            self.ready.set()
        await self.go.wait()


async def _writer(url: str, setup: Setup, seed: int, start: Start) -> int:
    """Upsert until the deadline; return the rows committed."""
    conn = await asyncpg.connect(url)
    try:
        statement = await conn.prepare(UPSERT)
        rnd = random.Random(seed)
        written = 0
        await start.wait()
        while time.perf_counter() < start.deadline:
            rows = [
                (f"p{rnd.randrange(KEYS)}", f"title {written + i}", _body(written + i))
                for i in range(setup.per_tx)
            ]
            if setup.per_tx == 1:
                await statement.fetch(*rows[0])
            else:
                async with conn.transaction():
                    await statement.executemany(rows)
            written += setup.per_tx
        return written
    finally:
        await conn.close()


async def write(url: str, setup: Setup, seconds: float, round_: int) -> tuple[int, float]:
    """Run ``setup``'s writers for ``seconds`` (connected before the clock); rows and wall seconds."""
    start = Start(setup.writers)
    tasks = [
        asyncio.create_task(_writer(url, setup, 1000 * round_ + i + 1, start)) for i in range(setup.writers)
    ]
    ready = asyncio.create_task(start.ready.wait())
    await asyncio.wait([ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():  # a writer failed to connect
        ready.cancel()
        await asyncio.gather(*tasks)
    t0 = time.perf_counter()
    start.deadline = t0 + seconds
    start.go.set()
    counts = await asyncio.gather(*tasks)
    return sum(counts), time.perf_counter() - t0


async def _prepare(url: str) -> None:
    """Create ``posts`` with every key written once (outside the clock)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(CREATE)
        await conn.execute(PREFILL, BODY, KEYS)
        await conn.execute("VACUUM ANALYZE posts")
    finally:
        await conn.close()


async def _checkpoint(url: str) -> None:
    """Start each timed run without a checkpoint pending from the previous one."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def block(
    server: Any, mode: Mode, round_: int, seconds: float, cells: dict[tuple[str, str], Cell], out: Output
) -> None:
    """Measure every setup of ``mode`` on a fresh database (its capture set up once for them all)."""
    name = f"bench_{mode.key}_{round_}"
    url = await asyncio.to_thread(server.create_database, name)
    consumer: CaptureProcess | None = None
    try:
        await _prepare(url)
        if mode.capture:
            consumer = CaptureProcess(url=url, mode=mode.capture, slot=name)
            await consumer.start()
        written = captured = 0
        for setup in SETUPS:
            out.step(f"round {round_ + 1}, {mode.key}. {mode.label[:40]}: {setup.label} ({seconds:.0f} s)")
            cell = cells[mode.key, setup.key]
            await _checkpoint(url)
            if consumer is not None:
                captured = (await consumer.request(cmd="settle", target=written, wait=CATCH_UP))["captured"]
            rows, took = await write(url, setup, seconds, round_)
            written += rows
            cell.rows += rows
            cell.seconds += took
            if consumer is None:
                cell.captured += rows
            else:
                reply = await consumer.request(
                    cmd="settle", target=written, wait=CATCH_UP, timeout=CATCH_UP + 30
                )
                cell.captured += reply["captured"] - captured
                cell.catch_up.append(reply["seconds"])
                if reply["captured"] < written:
                    raise RuntimeError(
                        f"the capture saw {reply['captured']:,} of {written:,} rows {CATCH_UP:.0f} s after "
                        f"the writers stopped (its last error: {reply['error'] or 'none'})"
                    )
            out.advance()
    finally:
        if consumer is not None:
            await consumer.stop()
        await asyncio.to_thread(_drop, server, name)


def _drop(server: Any, name: str) -> None:
    """Drop the database and the (inactive) slots on it, which would block the drop."""
    server.psql(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        f"WHERE database = '{name}' AND NOT active"
    )
    server.drop_database(name)


def _available() -> dict[str, str]:
    """Mode key -> why it cannot be measured here (absent: it can)."""
    missing = {}
    if not capture_keyword():
        missing["c"] = 'not built yet: PostgresChangeLog takes no capture="wal"'
    if not WAL2JSON.is_file():
        for key in "de":
            missing[key] = f"not measured: {WAL2JSON} is missing (apt-get install postgresql-15-wal2json)"
    return missing


def _ratio(cell: Cell, plain: Cell) -> str:
    return f"{cell.rate / plain.rate:.2f}x" if plain.rate and cell.seconds else "-"


def _caught_up(cell: Cell) -> str:
    return f"{max(cell.catch_up):.2f}" if cell.catch_up else "-"


def fill(table: Table, cells: dict[tuple[str, str], Cell], missing: dict[str, str]) -> None:
    """One line per mode: rows/s and the ratio to plain per setup, then what the capture saw."""
    for mode in MODES:
        if mode.key in missing:
            table.add([f"{mode.key}. {mode.label}", *["-"] * (2 * len(SETUPS)), missing[mode.key], "-"])
            continue
        line: list[Any] = [f"{mode.key}. {mode.label}"]
        records = []
        rows = captured = 0
        for setup in SETUPS:
            cell, plain = cells[mode.key, setup.key], cells["a", setup.key]
            ratio = _ratio(cell, plain)
            line += [cell.rate, ratio if mode.key != "a" else "1.00x"]
            rows += cell.rows
            captured += cell.captured
            note = (
                f"vs plain {ratio}, {cell.rows} rows in {cell.seconds:.2f} s, captured {cell.captured}, "
                f"caught up after {_caught_up(cell)} s"
            )
            records.append(
                table.row(
                    mode.label, f"{mode.key} {setup.key}", cell.rate, "rows/s", peer=mode.peer, note=note
                )
            )
            if mode.key != "a" and plain.rate:
                records.append(
                    table.row(
                        mode.label,
                        f"{mode.key} {setup.key} vs plain",
                        cell.rate / plain.rate,
                        "x plain",
                        peer=mode.peer,
                    )
                )
        if mode.capture:
            share = captured / rows if rows else 0.0
            records.append(
                table.row(mode.label, f"{mode.key} captured", share, "captured/written", peer=mode.peer)
            )
            line += [f"{share:.0%}", _caught_up(_merge(cells, mode))]
        else:
            line += ["-", "-"]
        table.add(line, *records)


def _merge(cells: dict[tuple[str, str], Cell], mode: Mode) -> Cell:
    merged = Cell()
    for setup in SETUPS:
        merged.catch_up += cells[mode.key, setup.key].catch_up
    return merged


async def _run(out: Output, table: Table, quick: bool, missing: dict[str, str]) -> None:
    from tests.services import PostgresServer

    rounds, seconds = _rounds(quick)
    modes = [mode for mode in MODES if mode.key not in missing]
    cells = {(mode.key, setup.key): Cell() for mode in MODES for setup in SETUPS}
    with PostgresServer(settings=SETTINGS) as server:
        version = server.psql("SHOW server_version").strip()
        for round_ in range(rounds):
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                if mode.key in missing:
                    continue
                try:
                    await block(server, mode, round_, seconds, cells, out)
                except Exception as exc:
                    if mode.key != "c":
                        raise
                    # rxstore's WAL capture may be half-built: its row says so, the others still run
                    missing["c"] = f"failed: {type(exc).__name__}: {exc}"[:200]
                    out.print(f"pg_capture: WAL capture {missing['c']}")
    fill(table, cells, missing)
    c = [cells["c", s.key] for s in SETUPS]
    now = (
        ", ".join(f"{s.label} {_ratio(cell, cells['a', s.key])}" for s, cell in zip(SETUPS, c, strict=True))
        if "c" not in missing
        else missing["c"]
    )
    table.notes += [
        f"target (issue 14): WAL capture (c) >= 0.85x plain on the write path; now: {now}",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL {version} "
        f"(fsync=off, synchronous_commit=off, wal_level=logical in every mode); writers: asyncpg in this "
        f"process; the capture reads in its own process; {rounds} round(s) of {seconds:.0f} s per cell, "
        "rows/s over all rounds",
        f"upserts of {KEYS:,} keys (each written once before the clock), {BODY}-byte body; 'captured': "
        f"changes the capture saw / rows written; 'caught up': seconds after the writers stopped",
    ]


def _rounds(quick: bool) -> tuple[int, float]:
    """Rounds (modes in turn, the order reversed every other round) and seconds per timed run."""
    return (1, 1.0) if quick else (3, 2.0)


def run(out: Output, *, quick: bool) -> list[Table]:
    from tests.services import PostgresServer

    table = Table(
        "pg_capture",
        "8. PostgreSQL capture: users' write throughput (rows/s) with each capture, same run",
        [
            "capture",
            *(column for setup in SETUPS for column in (setup.label, "vs plain")),
            "captured",
            "caught up (max s)",
        ],
    )
    reason = PostgresServer.missing()
    if reason:
        table.notes.append(f"not measured: {reason}")
        return [table]
    missing = _available()
    rounds, _ = _rounds(quick)
    out.start("8 pg_capture", rounds * (len(MODES) - len(missing)) * len(SETUPS))
    asyncio.run(_run(out, table, quick, missing))
    out.finish()
    return [table]
