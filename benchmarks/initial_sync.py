"""Benchmark: initial sync, a first connect to a big table, against the floor of one socket.

A table of 5 columns (~120 bytes a row as JSON) in a SQLite file (and in PostgreSQL
when its binaries are here), at 200,000 and 1,000,000 rows (``--rows`` for other
sizes; ``--quick``: 20,000 and 100,000). Each run, in turns, the same file:

* **floor**: one process reads ``SELECT *`` in pages (sqlite3; asyncpg for
  PostgreSQL), encodes each page with orjson and writes it to one loopback TCP
  socket; a second process reads the socket and decodes each page into a dict
  keyed by id;
* **rxstore**: ``rxstore serve --workers 1`` on the same database, and a client
  process with one ``TableStore`` (dict rows) awaiting ``root.live()``.

The time is the receiving process's, from the command to connect until it holds the
whole table; memory is its peak RSS (``VmHWM``), and per row the growth of it over
its RSS before connecting, divided by the rows. CPU seconds of the receiver and of the
sender (the floor's server, the gateway's process) are shown too: on a busy machine they
vary far less than the time. Ratios are of medians within one run.

The helper processes are this module run as ``python -m benchmarks.initial_sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Output, Table, commands, fmt, reply, rss_bytes

ROWS = (200_000, 1_000_000)
QUICK_ROWS = (20_000, 100_000)
PAGE_ROWS = 8_192
"""Rows per page of the floor (~1 MiB of JSON: the gateway's ``frame_bytes``)."""
TABLE = "items"
_COLUMNS = (
    "id TEXT PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL, n INTEGER NOT NULL, ts REAL NOT NULL"
)
_BODY = "a row of an initial sync benchmark, about one hundred and twenty bytes"

GOAL_TIME = 1.5
GOAL_LINEAR = 5.5
GOAL_RSS = 1.2


def _rows(start: int, stop: int) -> Iterator[tuple[Any, ...]]:
    for i in range(start, stop):
        yield (f"i{i:07d}", f"item {i}", _BODY, i, 1_700_000_000.0 + i / 8)


def fill_sqlite(path: Path, rows: int) -> None:
    """A SQLite file (WAL) with ``rows`` rows in ``items``."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"CREATE TABLE {TABLE} ({_COLUMNS})")
        for start in range(0, rows, 100_000):
            conn.executemany(
                f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?)", _rows(start, min(rows, start + 100_000))
            )
            conn.commit()


async def fill_postgres(dsn: str, rows: int) -> None:
    """The same table in PostgreSQL."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE TABLE {TABLE} ({_COLUMNS.replace('REAL', 'DOUBLE PRECISION')})")
        for start in range(0, rows, 100_000):
            await conn.copy_records_to_table(TABLE, records=list(_rows(start, min(rows, start + 100_000))))
        await conn.execute(f"ANALYZE {TABLE}")
    finally:
        await conn.close()


# -- the helper processes ---------------------------------------------------------------------------


def _max_rss() -> int:
    """This process's peak RSS (``VmHWM``: ``ru_maxrss`` would count the parent's RSS at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int) -> float:
    """CPU seconds of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _floor_send_sqlite(conn: socket.socket, db: str) -> None:
    import orjson

    with contextlib.closing(sqlite3.connect(db)) as database:
        cursor = database.execute(f"SELECT * FROM {TABLE} ORDER BY id")
        names = [d[0] for d in cursor.description]
        while rows := cursor.fetchmany(PAGE_ROWS):
            page = orjson.dumps([dict(zip(names, row, strict=True)) for row in rows])
            conn.sendall(len(page).to_bytes(4, "big") + page)
    conn.sendall(b"\0\0\0\0")


async def _floor_send_postgres(writer: asyncio.StreamWriter, dsn: str) -> None:
    import asyncpg
    import orjson

    database = await asyncpg.connect(dsn)
    try:
        async with database.transaction(readonly=True):
            cursor = await database.cursor(f"SELECT * FROM {TABLE} ORDER BY id")
            while rows := await cursor.fetch(PAGE_ROWS):
                page = orjson.dumps([dict(row) for row in rows])
                writer.write(len(page).to_bytes(4, "big") + page)
                await writer.drain()
    finally:
        await database.close()
    writer.write(b"\0\0\0\0")
    await writer.drain()


async def floor_server(options: dict[str, Any]) -> None:
    """Serve the table to each connection as the floor does; print the port."""
    db = options["db"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if db.startswith("postgresql"):
            await _floor_send_postgres(writer, db)
        else:
            sock = writer.get_extra_info("socket").dup()
            try:
                sock.setblocking(True)
                await asyncio.to_thread(_floor_send_sqlite, sock, db)
            finally:
                sock.close()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    reply({"port": server.sockets[0].getsockname()[1]})
    async for command in commands():
        if command["cmd"] == "quit":
            break
    server.close()


def _floor_receive(port: int) -> dict[Any, Any]:
    import orjson

    table: dict[Any, Any] = {}
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb", buffering=1 << 20) as f:
        while size := int.from_bytes(f.read(4), "big"):
            for row in orjson.loads(f.read(size)):
                table[row["id"]] = row
    return table


async def floor_client(options: dict[str, Any]) -> None:
    """Receive the table once per ``go`` command; reply with time, CPU and memory."""
    reply({"ready": True})
    kept: Any = None
    async for command in commands():
        if command["cmd"] == "go":
            kept = None
            rss0, cpu0 = rss_bytes(), _cpu()
            t0 = time.perf_counter()
            kept = _floor_receive(command["port"])
            seconds = time.perf_counter() - t0
            cpu = _cpu() - cpu0
            reply({"seconds": seconds, "cpu": cpu, "rows": len(kept), "rss0": rss0, "max_rss": _max_rss()})
        elif command["cmd"] == "quit":
            break


async def rx_client(options: dict[str, Any]) -> None:
    """One RootStore with one TableStore of dict rows; ``go`` connects and waits until it is live."""
    import logging

    from rxstore import RootStore, TableStore

    logging.getLogger("rxstore").setLevel(logging.ERROR)

    class Items(TableStore[Any]):
        table = TABLE

    items = Items()
    root = RootStore(options["url"], stores=[items], token=options["token"])
    reply({"ready": True})
    async for command in commands():
        if command["cmd"] == "go":
            rss0, cpu0 = rss_bytes(), _cpu()
            t0 = time.perf_counter()
            await root.setup_realtime()
            await root.live(timeout=900)
            seconds = time.perf_counter() - t0
            cpu = _cpu() - cpu0
            reply(
                {
                    "seconds": seconds,
                    "cpu": cpu,
                    "rows": len(items.value),
                    "rss0": rss0,
                    "max_rss": _max_rss(),
                }
            )
        elif command["cmd"] == "quit":
            break
    await root.teardown_realtime()


def _helper(**options: Any) -> Any:
    """A helper process of this benchmark (``role``: floor_server, floor_client or rx_client).

    ``benchmarks._gateway`` is imported here, not at the top: the floor's processes stay lean.
    """
    from benchmarks._gateway import Process

    process = Process(**options)
    process.module = "benchmarks.initial_sync"
    return process


def _token() -> str:
    from benchmarks._gateway import AUTH

    return AUTH.issue("bench", ttl=None)


def _secret() -> str:
    from benchmarks._gateway import AUTH

    return str(AUTH.secret)


# -- the served gateway ------------------------------------------------------------------------------


class Served:
    """``rxstore serve --workers 1`` on a database, serving ``items``."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        env = {**os.environ, "RXSTORE_SECRET": _secret()}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rxstore.cli", "serve", "--workers", "1", "--db", self.db,
            "--tables", TABLE, "--port", "0", "--log-level", "warning",
            stdout=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT),
        )  # fmt: skip
        assert self.process.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.process.stdout.readline(), 300)).decode()
            found = re.search(r"http://[\d.]+:\d+", line)
            if found:
                break
            if not line:
                raise RuntimeError(f"rxstore serve did not start (exit {await self.process.wait()})")
        self.url = found.group(0)
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while await self.process.stdout.readline():
            pass

    def serving_pid(self) -> int:
        """The serving process: the worker, if a supervisor started one."""
        assert self.process is not None
        pid = self.process.pid
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            pid = int(children[0]) if children else pid
        return pid

    def cpu(self) -> float:
        """CPU seconds of the serving process so far."""
        return _cpu_of(self.serving_pid())

    def peak_rss(self) -> int:
        """The highest RSS of the serving process."""
        for line in Path(f"/proc/{self.serving_pid()}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# -- the measurement -----------------------------------------------------------------------------------


async def _floor_once(db: str, rows: int) -> dict[str, Any]:
    server = await _helper(role="floor_server", db=db).start()
    client = await _helper(role="floor_client").start()
    try:
        cpu0 = _cpu_of(server.pid)
        result: dict[str, Any] = await client.request(timeout=900, cmd="go", port=server.ready["port"])
        result["gateway_cpu"] = _cpu_of(server.pid) - cpu0
    finally:
        await client.stop()
        await server.stop()
    if result["rows"] != rows:
        raise RuntimeError(f"the floor received {result['rows']} rows of {rows}")
    return result


async def _rxstore_once(db: str, rows: int) -> dict[str, Any]:
    served = Served(db)
    await served.start()
    client = None
    try:
        client = await _helper(role="rx_client", url=served.url, token=_token()).start()
        cpu0 = served.cpu()
        result: dict[str, Any] = await client.request(timeout=900, cmd="go")
        result["gateway_peak"] = served.peak_rss()
        result["gateway_cpu"] = served.cpu() - cpu0
    finally:
        if client is not None:
            await client.stop()
        await served.stop()
    if result["rows"] != rows:
        raise RuntimeError(f"rxstore received {result['rows']} rows of {rows}")
    return result


def _per_row(result: dict[str, Any], rows: int) -> float:
    return float(result["max_rss"] - result["rss0"]) / rows


async def _measure(out: Output, database: str, db: str, rows: int, repeats: int) -> dict[str, Any]:
    floors: list[dict[str, Any]] = []
    rxs: list[dict[str, Any]] = []
    for i in range(repeats):
        out.step(f"{database} {rows:,} rows: floor ({i + 1}/{repeats})")
        floors.append(await _floor_once(db, rows))
        out.step(f"{database} {rows:,} rows: rxstore ({i + 1}/{repeats})")
        rxs.append(await _rxstore_once(db, rows))
        out.advance()
    return {"floor": floors, "rxstore": rxs}


async def _sizes(out: Output, rows_list: tuple[int, ...], repeats: int) -> dict[str, dict[int, Any]]:
    from tests.services import PostgresServer

    found: dict[str, dict[int, Any]] = {"sqlite": {}}
    with tempfile.TemporaryDirectory(prefix="rxstore-sync-") as tmp:
        for rows in rows_list:
            path = Path(tmp) / f"sync-{rows}.db"
            out.step(f"sqlite: filling {rows:,} rows")
            await asyncio.to_thread(fill_sqlite, path, rows)
            found["sqlite"][rows] = await _measure(out, "sqlite", str(path), rows, repeats)
            path.unlink()
    if PostgresServer.missing() is not None:
        return found
    found["postgresql"] = {}
    postgres = PostgresServer()
    await asyncio.to_thread(postgres.__enter__)
    try:
        for rows in rows_list:
            dsn = await asyncio.to_thread(postgres.create_database, f"sync{rows}")
            out.step(f"postgresql: filling {rows:,} rows")
            await fill_postgres(dsn, rows)
            found["postgresql"][rows] = await _measure(out, "postgresql", dsn, rows, repeats)
            await asyncio.to_thread(postgres.drop_database, f"sync{rows}")
    finally:
        await asyncio.to_thread(postgres.__exit__, None, None, None)
    return found


def _span(values: list[float], unit: str = "") -> str:
    low, high = min(values), max(values)
    return f"{fmt(low)}{unit}" if fmt(low) == fmt(high) else f"{fmt(low)}-{fmt(high)}{unit}"


def _mib(value: float) -> str:
    return f"{value / (1 << 20):.0f} MiB"


def _cpus(results: list[dict[str, Any]]) -> str:
    """Median CPU seconds of the receiving process + of the sending one."""
    receiver = statistics.median(r["cpu"] for r in results)
    sender = statistics.median(r["gateway_cpu"] for r in results)
    return f"{receiver:.2f} + {sender:.2f}"


def run(out: Output, *, quick: bool, rows: list[int] | None = None) -> list[Table]:
    sizes = tuple(rows) if rows else QUICK_ROWS if quick else ROWS
    repeats = 1 if quick else 3
    databases = 2 if _postgres_here() else 1
    out.start("initial sync", len(sizes) * repeats * databases)
    found = asyncio.run(_sizes(out, sizes, repeats))
    table = Table(
        "initial_sync",
        f"Initial sync: time to live for one client, {len(sizes)} table sizes, against the floor "
        f"(median of {repeats}; ranges)",
        [
            "database",
            "rows",
            "floor (s)",
            "rxstore (s)",
            "rxstore / floor",
            "CPU s, receiver + sender (floor / rxstore)",
            "client max RSS (floor / rxstore)",
            "RSS per row (floor / rxstore)",
            "rxstore / floor per row",
            "gateway peak RSS",
        ],
    )
    for database, by_rows in found.items():
        medians: dict[int, float] = {}
        for n, result in by_rows.items():
            floor_s = [r["seconds"] for r in result["floor"]]
            rx_s = [r["seconds"] for r in result["rxstore"]]
            floor_per = statistics.median(_per_row(r, n) for r in result["floor"])
            rx_per = statistics.median(_per_row(r, n) for r in result["rxstore"])
            time_ratio = statistics.median(rx_s) / statistics.median(floor_s)
            medians[n] = statistics.median(rx_s)
            table.add(
                [
                    database,
                    f"{n:,}",
                    _span(floor_s),
                    _span(rx_s),
                    f"{time_ratio:.2f}x",
                    f"{_cpus(result['floor'])} / {_cpus(result['rxstore'])}",
                    f"{_mib(statistics.median(r['max_rss'] for r in result['floor']))} / "
                    f"{_mib(statistics.median(r['max_rss'] for r in result['rxstore']))}",
                    f"{floor_per:.0f} / {rx_per:.0f} B",
                    f"{rx_per / floor_per:.2f}x",
                    _mib(max(r["gateway_peak"] for r in result["rxstore"])),
                ],
                table.row("floor", f"{database} {n} rows", statistics.median(floor_s), "s", peer=True),
                table.row("rxstore", f"{database} {n} rows", statistics.median(rx_s), "s"),
                table.row("rxstore / floor", f"{database} {n} rows", time_ratio, "x"),
                table.row("rxstore / floor RSS per row", f"{database} {n} rows", rx_per / floor_per, "x"),
            )
        low, high = min(medians), max(medians)
        if high > low:
            growth = medians[high] / medians[low]
            table.notes.append(
                f"{database}: {high:,} rows took {growth:.2f}x the time of {low:,} "
                f"({high / low:.0f}x the rows; goal <= {GOAL_LINEAR * high / low / 5:.2f}x)"
            )
    table.notes.append(
        f"goals: rxstore <= {GOAL_TIME}x the floor's time at every size; linear: 1M rows <= {GOAL_LINEAR}x "
        f"the 200k time; client RSS per row <= {GOAL_RSS}x the floor's; the gateway's peak RSS bounded "
        "by its chunk window, not by the table"
    )
    out.finish()
    return [table]


def _postgres_here() -> bool:
    from tests.services import PostgresServer

    return PostgresServer.missing() is None


_ROLES = {"floor_server": floor_server, "floor_client": floor_client, "rx_client": rx_client}

if __name__ == "__main__":
    _options = json.loads(sys.argv[1])
    asyncio.run(_ROLES[_options["role"]](_options))
