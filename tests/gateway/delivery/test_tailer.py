"""rxstore.gateway.delivery.tailer: the DEBUG line of each change broadcast, and none when DEBUG is off.

A real gateway on SQLite on 127.0.0.1, RootStore clients over real python-socketio: two that follow
the whole table (the shared frames) and one that follows a subset (the subscription index).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rxstore import RootStore
from rxstore.gateway.demo import Post, delete_post, save_post
from tests.gateway.harness import AUTH, PostStore, root_for, start_gateway
from tests.logs import debug_lines, debug_records_made
from tests.waiting import wait_for


async def test_at_debug_each_change_broadcast_is_one_realtimegateway_line_and_when_off_no_record_is_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """rxstore.gateway at DEBUG: one [RealtimeGateway] line per change broadcast, with its seq, table,
    op and the clients handed it (whole-table and subset clients); at INFO a broadcast makes no DEBUG
    record."""
    caplog.set_level(logging.INFO, logger="rxstore")
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        (alice, all_a), (bob, all_b) = root_for(gateway, "alice"), root_for(gateway, "bob")
        mine = PostStore(where={"author": "ann"})
        subset = RootStore(gateway.url, stores=[mine], token=AUTH.issue("carol"))
        async with alice, bob, subset:
            await wait_for(lambda: sum(c.live for c in gateway._clients.values()) == 3, 10, "three live")
            with debug_records_made() as made:
                await save_post(gateway.log, Post(id="p1", title="one", author="ann"))
                await wait_for(lambda: "p1" in all_a.value and "p1" in all_b.value and "p1" in mine.value)
            assert made == []
            caplog.set_level(logging.DEBUG, logger="rxstore.gateway")
            caplog.clear()
            first = await gateway.log.head() + 1
            await save_post(gateway.log, Post(id="p2", title="two", author="bob"))
            await save_post(gateway.log, Post(id="p1", title="ONE", author="ann"))
            await delete_post(gateway.log, "p2")
            last = await gateway.log.head()
            await wait_for(lambda: alice.cursor == bob.cursor == last, 10, "the three changes")
            await wait_for(lambda: mine.value["p1"].title == "ONE", 10, "the subset's update")
            lines = [line for line in debug_lines(caplog, "rxstore.gateway") if "[RealtimeGateway]" in line]
    finally:
        await gateway.stop()
    assert lines == [
        f"[RealtimeGateway] broadcast: seq={first} table=posts op=INSERT clients=2",
        f"[RealtimeGateway] broadcast: seq={first + 1} table=posts op=UPDATE clients=3",
        f"[RealtimeGateway] broadcast: seq={first + 2} table=posts op=DELETE clients=2",
    ]
