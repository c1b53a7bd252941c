"""A plain npm ``socket.io-client`` 4.x follows a subset of a table (a live query) and switches it.

Runs ``tests/interop/follow_subset.mjs`` with Node.js against a real
:class:`~rxstore.gateway.server.RealtimeGateway` on SQLite: it connects with
``subscriptions`` (and ``topics: []``), applies the subset's snapshot, follows
its live changes (a row entering the subset arrives as an INSERT, one leaving
it as a DELETE carrying the key only), switches the subset with
``rxstore:subscribe`` while posts are written, and ends with the rows the
database's subset holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rxstore.gateway.demo import Post, all_posts, delete_post, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, start_gateway
from tests.gateway.log.test_contract_epoch import protocol_page_example
from tests.interop.test_node_client import ROOT, node  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.node, pytest.mark.timeout(60)]

SCRIPT = Path(__file__).with_name("follow_subset.mjs")
LIMIT = 40.0
"""Time limit of the Node script, seconds; each wait of the test is shorter."""
ANN = {"id": "feed", "topic": "posts", "where": [["author", "=", "ann"]], "columns": ["title", "author"]}
BOB = {
    "id": "feed",
    "topic": "posts",
    "where": [["author", "=", "bob"], ["likes", ">=", 0]],
    "columns": ["title", "author", "likes"],
}


class NodeSubset:
    """The Node script as a subprocess: commands on stdin, status lines on stderr, a report on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.statuses: list[dict[str, Any]] = []
        self.other: list[str] = []

    async def command(self, **command: Any) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write((json.dumps(command) + "\n").encode())
        await stdin.drain()

    async def wait_for(
        self, what: str, test: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        """The first status line (already read or still to come) that passes ``test``."""
        for message in self.statuses:
            if test(message):
                return message
        stderr = self.proc.stderr
        assert stderr is not None

        async def read() -> dict[str, Any]:
            while line := await stderr.readline():
                try:
                    message: dict[str, Any] = json.loads(line)
                except ValueError:
                    self.other.append(line.decode(errors="replace"))
                    continue
                self.statuses.append(message)
                if test(message):
                    return message
            raise AssertionError(
                f"node exited before {what}; stderr: {self.other}, statuses: {self.statuses}"
            )

        try:
            return await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout} s; statuses: {self.statuses}") from None

    async def report(self) -> tuple[int, dict[str, Any]]:
        """Send ``done``; the script's exit code and its JSON report."""
        await self.command(done=True)
        stdout = self.proc.stdout
        assert stdout is not None
        line = await asyncio.wait_for(stdout.readline(), 15)
        code = await asyncio.wait_for(self.proc.wait(), 15)
        assert line, f"no report; stderr: {self.other}"
        report: dict[str, Any] = json.loads(line)
        return code, report


@contextlib.asynccontextmanager
async def follow_subset(node: str, url: str, subscription: dict[str, Any]) -> AsyncIterator[NodeSubset]:  # noqa: F811
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), url, AUTH.issue("alice"), json.dumps(subscription), str(LIMIT),
        cwd=ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield NodeSubset(proc)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    yield gateway
    await gateway.stop()


def post(key: str, author: str, title: str = "t", likes: int = 0) -> Post:
    return Post(id=key, title=title, author=author, likes=likes)


async def subset_in_db(
    gateway: RealtimeGateway, author: str, columns: list[str]
) -> dict[str, dict[str, Any]]:
    """The posts of ``author``, projected to ``columns`` and the key, as the database has them."""
    return {
        key: {name: getattr(p, name) for name in ("id", *columns)}
        for key, p in (await all_posts(gateway.log)).items()
        if p.author == author
    }


async def test_node_client_follows_a_subset_moves_in_and_out_switches_and_ends_equal_to_the_db(
    node: str,  # noqa: F811  (the fixture)
    gateway: RealtimeGateway,
) -> None:
    """Snapshot of the subset, a move-in as INSERT, a move-out as DELETE of the key, a switch under
    writes (no row of the old subset after the ack), and final rows equal to the database's subset."""
    log = gateway.log
    for key, author in [("p1", "ann"), ("p2", "bob"), ("p3", "ann"), ("p4", "cy")]:
        await save_post(log, post(key, author))
    async with follow_subset(node, gateway.url, ANN) as client:
        snapshot = await client.wait_for("the snapshot", lambda m: m.get("status") == "snapshot")
        assert (snapshot["event"], snapshot["count"]) == ("feed", 2)
        await client.wait_for("live", lambda m: m.get("status") == "live")

        await save_post(log, post("p2", "ann", "moved in"))  # seq 5: enters
        await save_post(log, post("p1", "bob", "secret new title"))  # seq 6: leaves
        await save_post(log, post("p4", "cy", "not ann's"))  # seq 7: nothing to the subset
        await save_post(log, post("p3", "ann", "renamed"))  # seq 8: stays
        await client.wait_for("seq 8", lambda m: m.get("status") == "change" and m["seq"] == 8)

        async def writer(stop: asyncio.Event) -> None:  # both authors' posts change during the switch
            n = 0
            while not stop.is_set():
                n += 1
                await save_post(log, post(f"w{n % 7}", ("ann", "bob")[n % 2], f"w{n}", likes=n))
                await asyncio.sleep(0.005)

        stop = asyncio.Event()
        writing = asyncio.create_task(writer(stop))
        try:
            await asyncio.sleep(0.05)
            await client.command(subscribe=BOB)
            switched = await client.wait_for("the switch's ack", lambda m: m.get("status") == "subscribed")
            await asyncio.sleep(0.05)
        finally:
            stop.set()
            await writing
        ack = switched["ack"]
        assert ack is not None and ack["ok"] is True and isinstance(ack["seq"], int), switched
        assert switched["rows"] and all(row["author"] == "bob" for row in switched["rows"].values())

        await save_post(log, post("p4", "bob", "cy gave it"))  # enters bob's
        await save_post(log, post("p2", "ann", "back to ann"))  # not bob's before or after
        await save_post(log, post("p1", "ann", "ann took it"))  # leaves bob's
        await save_post(log, post("p5", "bob", "new"))  # a new row of bob's
        await delete_post(log, "p4")  # deleted while in bob's
        head = await log.head()
        await client.wait_for("the last change", lambda m: m.get("status") == "change" and m["seq"] == head)
        code, report = await client.report()

    assert code == 0 and report["errors"] == [], report["errors"]
    changes = report["changes"]
    before = [
        (c["change"]["seq"], c["change"]["op"], c["change"]["record"], c["change"]["old"]) for c in changes
    ]
    assert before[:3] == [
        (5, "INSERT", {"id": "p2", "title": "moved in", "author": "ann"}, None),  # move-in
        (6, "DELETE", None, {"id": "p1"}),  # move-out: the key only, not bob's new title
        (
            8,
            "UPDATE",
            {"id": "p3", "title": "renamed", "author": "ann"},
            {"id": "p3", "title": "t", "author": "ann"},
        ),
    ]
    last_snapshot = report["snapshots"][-1]
    assert (last_snapshot["event"], last_snapshot["seq"]) == (
        "feed",
        ack["seq"],
    )  # the switch's, before its ack
    assert all(c["afterAck"] == 0 for c in changes[: last_snapshot["afterChanges"]])
    after = [c["change"] for c in changes[last_snapshot["afterChanges"] :]]  # the new subset's changes
    assert all(c["record"]["author"] == "bob" for c in after if c["record"] is not None)  # nothing of ann's
    assert all(
        set(c["record"]) == {"id", "title", "author", "likes"} for c in after if c["record"] is not None
    )
    assert all(c["seq"] > ack["seq"] for c in after)
    moves = [(c["op"], (c["record"] or c["old"])["id"]) for c in after if c["seq"] > head - 5]
    assert moves == [("INSERT", "p4"), ("DELETE", "p1"), ("INSERT", "p5"), ("DELETE", "p4")]  # not p2
    assert report["rows"] == await subset_in_db(gateway, "bob", ["title", "author", "likes"])


# -- the npm example of docs/protocol.md, switched -------------------------------------

DRIVER = """
// -- added by tests/interop/test_node_subset.py: one command a line on stdin
import { createInterface } from "node:readline";
const rowsLine = (tag) => console.log(`${tag} ${JSON.stringify(Object.fromEntries(posts))}`);
createInterface({ input: process.stdin }).on("line", async (line) => {
  const command = JSON.parse(line);
  if (command.rows) return rowsLine("rows");
  try {
    await show(command.where);
    rowsLine("shown");
  } catch (err) {
    console.log(`refused ${err.message}`);
  }
});
"""


class Example:
    """The page's example (plus :data:`DRIVER`) as a subprocess: commands in, tagged lines out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    async def line(self, prefix: str, timeout: float = 10) -> str:
        """The next line of stdout that starts with ``prefix`` (without it)."""
        stdout = self.proc.stdout
        assert stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await stdout.readline()
                assert raw, f"the example exited; it printed {self.lines}"
                self.lines.append(raw.decode().rstrip("\n"))
                if self.lines[-1].startswith(prefix):
                    return self.lines[-1][len(prefix) :].strip()

    async def rows(self) -> dict[str, Any]:
        await self.send(rows=True)
        rows: dict[str, Any] = json.loads(await self.line("rows "))
        return rows

    async def rows_become(self, expected: dict[str, Any], timeout: float = 10) -> None:
        """Ask for the rows until they are ``expected`` (live changes are on their way)."""
        rows: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            while (rows := await self.rows()) != expected:
                await asyncio.sleep(0.05)
        assert rows == expected


async def projected(gateway: RealtimeGateway, keep: Callable[[Post], bool]) -> dict[str, Any]:
    columns = ("id", "title", "author", "likes")
    posts = await all_posts(gateway.log)
    return {key: {name: getattr(p, name) for name in columns} for key, p in posts.items() if keep(p)}


async def test_the_protocol_page_example_follows_a_subset_and_switches_it(
    node: str,  # noqa: F811  (the fixture)
    gateway: RealtimeGateway,
    tmp_path: Path,
) -> None:
    """The socket.io-client example of docs/protocol.md, run as written with ``show(where)`` called:
    its snapshot, a move-in and a move-out, a switch that returns with the new rows, a refused
    switch that changes nothing; its rows equal the database's subset after each step."""
    (tmp_path / "example.mjs").write_text(protocol_page_example() + DRIVER)
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    log = gateway.log
    for n in range(10):
        await save_post(log, post(f"p{n}", ("ann", "bob")[n % 2], likes=n))
    env = {**os.environ, "GATEWAY_URL": gateway.url, "RXSTORE_TOKEN": AUTH.issue("alice"), "MIN_LIKES": "5"}
    proc = await asyncio.create_subprocess_exec(
        node, str(tmp_path / "example.mjs"), env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    example = Example(proc)
    try:
        assert await example.line("live at seq") == "10: 5 posts"
        assert await example.rows() == await projected(gateway, lambda p: p.likes >= 5)
        await save_post(log, post("p1", "bob", "liked now", likes=7))  # moves in
        await save_post(log, post("p6", "ann", "unliked", likes=0))  # moves out
        await example.rows_become(await projected(gateway, lambda p: p.likes >= 5))

        await example.send(where=[["author", "=", "ann"]])
        shown = json.loads(await example.line("shown "))
        assert shown == await projected(gateway, lambda p: p.author == "ann")  # at the ack
        await save_post(log, post("p3", "ann", "ann's now", likes=3))  # moves in
        await delete_post(log, "p0")  # ann's, deleted
        await save_post(log, post("p7", "bob", "bob's", likes=99))  # neither before nor after
        await example.rows_become(await projected(gateway, lambda p: p.author == "ann"))

        await example.send(where=[["nope", "=", 1]])
        assert (await example.line("refused ")).startswith("invalid_subscription: ")
        await save_post(log, post("p2", "ann", "still ann's"))
        await example.rows_become(await projected(gateway, lambda p: p.author == "ann"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
