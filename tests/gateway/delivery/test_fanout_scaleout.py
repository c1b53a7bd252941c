"""Two gateway nodes on one PostgreSQL log with a real Redis between them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import attrs
import pytest

from rxstore import CallRejected, DomainStore, Event, RootStore
from rxstore.gateway.demo import Post, all_posts, save_post
from tests.gateway.harness import AUTH, PostStore, start_gateway
from tests.waiting import wait_for


@attrs.frozen
class Presence:
    seen: tuple[str, ...] = ()


class PresenceStore(DomainStore[Presence]):
    accepts = ("typing",)
    initial = Presence()

    def reduce(self, state: Presence, event: Event) -> Presence:
        return Presence((*state.seen, f"{event.data['from']}:{event.data['data']}"))


async def health(url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(f"{url}/healthz") as response:
        report: dict[str, Any] = json.loads(await response.text())
        return report | {"http": response.status}


@pytest.mark.timeout(90)
async def test_two_nodes_share_the_log_and_broadcasts_cross_nodes(pg_dsn, redis_server) -> None:
    node1 = await start_gateway(pg_dsn, redis_url=redis_server.url)
    node2 = await start_gateway(pg_dsn, redis_url=redis_server.url)
    try:
        ann_posts, bob_posts = PostStore(), PostStore()
        ann_presence, bob_presence = PresenceStore(), PresenceStore()
        async with (
            RootStore(node1.url, stores=[ann_posts, ann_presence], token=AUTH.issue("ann")) as ann,
            RootStore(node2.url, stores=[bob_posts, bob_presence], token=AUTH.issue("bob")) as bob,
        ):
            for i in range(20):
                await save_post(node1.log, Post(id=f"p{i}", title=str(i)))
            await wait_for(lambda: len(ann_posts.value) == 20 and len(bob_posts.value) == 20)
            await ann.broadcast("posts", "typing", "p1")
            await bob.broadcast("posts", "typing", "p2")
            await wait_for(lambda: bob_presence.value.seen == ("ann:p1",), what="ann's broadcast on node 2")
            await wait_for(lambda: ann_presence.value.seen == ("bob:p2",), what="bob's broadcast on node 1")
            assert ann.metrics.duplicates == 0 and bob.metrics.duplicates == 0
            assert ann_posts.value.to_dict() == bob_posts.value.to_dict() == await all_posts(node1.log)
            assert (await health(node1.url))["redis"] == "up"

            # Redis goes away: nodes report it, changes still flow (they never go through Redis).
            redis_server.stop()
            for node in (node1, node2):
                await wait_for(
                    lambda node=node: redis_is(node.url, "down", 503), what="redis down, 503", interval=0.1
                )
            await save_post(node2.log, Post(id="during", title="redis down"))
            with pytest.raises(CallRejected) as refused:  # would not reach the other node: said so
                await ann.broadcast("posts", "typing", "lost")
            assert refused.value.code == "unavailable"
            await wait_for(lambda: "during" in ann_posts.value and "during" in bob_posts.value)
            redis_server.start()
            await wait_for(lambda: redis_is(node1.url, "up"), 20, "node 1 redis up", interval=0.1)
            await wait_for(lambda: redis_is(node2.url, "up"), 20, "node 2 redis up", interval=0.1)
            await bob.broadcast("posts", "typing", "after")
            await wait_for(
                lambda: ann_presence.value.seen[-1:] == ("bob:after",), what="broadcast after restart"
            )
    finally:
        async with asyncio.timeout(30):
            await node1.stop()
            await node2.stop()


async def redis_is(url: str, state: str, http: int | None = None) -> bool:
    """Whether the node at ``url`` reports Redis ``state`` (and, if given, that HTTP status) on /healthz."""
    report = await health(url)
    return bool(report["redis"] == state and (http is None or report["http"] == http))


@pytest.mark.timeout(90)
async def test_a_node_hears_redis_again_soon_after_a_long_outage(tmp_path, redis_server) -> None:
    """python-socketio's listener doubles its retry pause up to 60 s (after 16 s down, its next try
    is ~15 s after Redis returns); rxstore's retries at most every 2 s."""
    node = await start_gateway(f"sqlite:///{tmp_path}/app.db", redis_url=redis_server.url)
    try:
        await wait_for(lambda: redis_is(node.url, "up"), what="redis up", interval=0.1)
        redis_server.stop()
        await wait_for(lambda: redis_is(node.url, "down"), what="redis down", interval=0.1)
        await asyncio.sleep(16)  # the point of the test: an outage long enough to back socketio's retry off
        redis_server.start()
        await wait_for(lambda: redis_is(node.url, "up"), 6, "redis up again within 6 s", interval=0.1)
    finally:
        async with asyncio.timeout(30):
            await node.stop()
