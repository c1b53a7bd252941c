"""A state file that no longer fits what the app runs against: other stores, bad row text, another database.

Each is one clear warning (``root.errors``) and a fresh snapshot, never a crash and never
the file's rows shown as the new database's.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from rxstore import RootStore, TableStore
from rxstore.gateway.demo import all_posts
from rxstore.gateway.server import RealtimeGateway
from rxstore.protocol.errors import PersistError
from tests.persist.harness import AUTH, PostStore, Received, gateway_on, write_posts
from tests.services import free_port


async def follow_and_stop(port: int, state: Path, *stores: TableStore[Any]) -> None:
    """A root follows ``stores`` to live, writes them to ``state`` and stops."""
    root = RootStore(f"http://127.0.0.1:{port}", stores=list(stores), token=AUTH.issue("ann"), persist=state)
    async with root:
        await root.live(timeout=10)
        await root.persisted()


async def fresh_snapshot_after_warning(port: int, state: Path, gateway: RealtimeGateway) -> list[str]:
    """A root restarted on ``state``: nothing shown from disk, then the database's rows by a snapshot;
    the reasons of the persist warnings it told."""
    posts = PostStore()
    root = RootStore(f"http://127.0.0.1:{port}", stores=[posts], token=AUTH.issue("ann"), persist=state)
    errors: list[Exception] = []
    root.errors.subscribe(errors.append)
    assert not await root.loaded() and len(posts.value) == 0
    async with root:
        await root.live(timeout=10)
        assert posts.value.to_dict() == await all_posts(gateway.log)
    return [e.reason for e in errors if isinstance(e, PersistError)]


async def test_another_set_of_stores_gets_one_warning_and_a_fresh_snapshot(tmp_path: Path) -> None:
    """The file holds two stores' rows (two subscriptions); the app now runs one of them: nothing
    from disk, one warning, a snapshot."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(4))
        state = tmp_path / "state.db"
        await follow_and_stop(port, state, PostStore(), PostStore(event="second"))
        assert await fresh_snapshot_after_warning(port, state, gateway) == ["changed"]
    finally:
        await gateway.stop()


async def test_a_row_that_is_not_json_sets_the_file_aside_and_a_fresh_snapshot_follows(
    tmp_path: Path,
) -> None:
    """A readable SQLite file whose row text is damaged (not JSON): set aside as corrupt, not a crash."""
    port = free_port()
    gateway = await gateway_on(tmp_path, port)
    try:
        await write_posts(gateway, range(4))
        state = tmp_path / "state.db"
        await follow_and_stop(port, state, PostStore())
        with contextlib.closing(sqlite3.connect(state)) as db:
            assert db.execute('UPDATE rxstore_rows SET row = \'{"id": "p1", "ti\'').rowcount == 4
            db.commit()
        assert await fresh_snapshot_after_warning(port, state, gateway) == ["corrupt"]
        assert list(tmp_path.glob("state.db.corrupt-*")), "the damaged file kept aside"
    finally:
        await gateway.stop()


async def test_a_file_of_another_database_resets_to_that_databases_rows(tmp_path: Path) -> None:
    """The app is pointed at another database (its own log, its own epoch) with the old state file:
    the disk copy is shown at first (from disk), then the gateway resets it (another epoch, and a
    cursor past the new log's head: either check alone does) and one snapshot leaves exactly the
    new database's rows, none of the old ones."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    port = free_port()
    state = tmp_path / "state.db"
    gateway = await gateway_on(first, port)
    try:
        await write_posts(gateway, range(6), title="old")
        await follow_and_stop(port, state, PostStore())
    finally:
        await gateway.stop()
    other = await gateway_on(second, port)
    try:
        await write_posts(other, range(3, 5), title="new")
        posts = PostStore()
        root = RootStore(f"http://127.0.0.1:{port}", stores=[posts], token=AUTH.issue("ann"), persist=state)
        received = Received(root)
        assert await root.loaded() and len(posts.value) == 6  # the disk copy, until the gateway answers
        async with root:
            await root.live(timeout=10)
            assert posts.value.to_dict() == await all_posts(other.log)
            assert sorted(posts.value.rows) == ["p3", "p4"]
        assert received.snapshots == 1
    finally:
        await other.stop()
