"""Mutations: optimistic rows, rollback, exactly-once across lost acks and reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rxstore import Backoff, CallRejected, RootStore
from rxstore.gateway.demo import Post, all_posts
from rxstore.gateway.log.open_log import open_change_log
from rxstore.gateway.server import RealtimeGateway, Writes
from tests.gateway.harness import AUTH, PostStore, start_gateway
from tests.waiting import wait_for


def register(gateway: RealtimeGateway) -> None:
    @gateway.mutation("create_post")
    async def create_post(user: Any, args: Any) -> Writes:
        if not isinstance(args, dict) or not isinstance(args.get("title"), str) or not args["title"]:
            raise ValueError("create_post needs a non-empty 'title'")
        return Writes(
            [
                (
                    "INSERT INTO posts (id, title, author) VALUES (?, ?, ?)",
                    (args["id"], args["title"], user.id),
                )
            ],
            result={"id": args["id"]},
        )

    @gateway.mutation("append_title")
    async def append_title(user: Any, args: Any) -> Writes:
        return Writes([("UPDATE posts SET title = title || ? WHERE id = ?", (args["suffix"], args["id"]))])

    calls = {"n": 0}

    @gateway.mutation("numbered_post")
    async def numbered_post(user: Any, args: Any) -> Writes:
        """A result that differs on every call: a retry must get the first one back."""
        calls["n"] += 1
        title = f"{args['title']} #{calls['n']}"
        return Writes([("INSERT INTO posts (id, title) VALUES (?, ?)", (args["id"], title))], result=title)

    @gateway.mutation("delete_any")
    async def delete_any(user: Any, args: Any) -> Writes:
        raise PermissionError(f"{user.id} may not delete posts")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    register(gateway)
    yield gateway
    await gateway.stop()


async def test_optimistic_row_shows_at_once_and_is_replaced_by_the_logged_change(gateway) -> None:
    """The logged change settles the optimistic row at once, long before the ``settle_after`` timer."""
    posts = PostStore()
    settle_after = 60.0  # the fallback timer must not be what settles the row here
    async with RootStore(
        gateway.url, stores=[posts], token=AUTH.issue("ann"), settle_after=settle_after
    ) as root:
        await wait_for(lambda: posts.seq is not None)
        pending = asyncio.ensure_future(
            root.mutate(
                "create_post",
                {"id": "p1", "title": "hello"},
                optimistic={posts: {"p1": Post(id="p1", title="hello")}},
            )
        )
        await asyncio.sleep(0)
        assert posts.value["p1"].author == "" and "p1" not in posts.confirmed  # shown, not confirmed
        assert await pending == {"id": "p1"}
        acked = asyncio.get_running_loop().time()
        await wait_for(lambda: "p1" in posts.confirmed and not posts.pending, timeout=5, what="settled")
        assert asyncio.get_running_loop().time() - acked < settle_after / 10
        assert posts.value["p1"] == Post(id="p1", title="hello", author="ann")  # the logged row, not ours


async def test_rejected_mutation_rolls_back_and_reports(gateway) -> None:
    posts = PostStore()
    async with RootStore(gateway.url, stores=[posts], token=AUTH.issue("ann")) as root:
        errors: list[Exception] = []
        root.errors.subscribe(errors.append)
        with pytest.raises(CallRejected) as rejected:
            await root.mutate(
                "create_post", {"id": "px", "title": ""}, optimistic={posts: {"px": Post("px", "")}}
            )
        assert rejected.value.code == "invalid_payload" and "px" not in posts.value and not posts.pending
        with pytest.raises(CallRejected) as forbidden:
            await root.mutate("delete_any", {})
        assert forbidden.value.code == "forbidden"
        with pytest.raises(CallRejected) as unknown:
            await root.mutate("no_such_mutation", {})
        assert unknown.value.code == "unknown_mutation"
        assert len(errors) == 3


async def test_same_mutation_id_twice_is_applied_once(gateway) -> None:
    posts = PostStore()
    async with RootStore(gateway.url, stores=[posts], token=AUTH.issue("ann")) as root:
        message = {"id": "m-1", "name": "append_title", "args": {"id": "p1", "suffix": "!"}}
        await root.mutate("create_post", {"id": "p1", "title": "hi"})
        first = await root.call("rxstore:mutate", message)
        second = await root.call("rxstore:mutate", message)
        assert first["duplicate"] is False and second["duplicate"] is True
        await wait_for(lambda: posts.value.get("p1") is not None and posts.value["p1"].title == "hi!")
        # Another user with the same id is a different mutation.
        async with RootStore(gateway.url, stores=[], token=AUTH.issue("bob"), topics=["posts"]) as bob:
            assert (await bob.call("rxstore:mutate", message))["duplicate"] is False
        await wait_for(lambda: posts.value["p1"].title == "hi!!")
    assert (await all_posts(gateway.log))["p1"].title == "hi!!"


async def test_50_mutations_queued_offline_apply_once_in_order_after_reconnect(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    gateway = await start_gateway(url)
    register(gateway)
    port = gateway.port
    posts = PostStore()
    root = RootStore(
        gateway.url,
        stores=[posts],
        token=AUTH.issue("ann"),
        backoff=Backoff(initial=0.05, maximum=0.2),
        call_timeout=30,
    )
    async with root:
        await root.mutate("create_post", {"id": "p", "title": "0"})
        await gateway.stop()
        await wait_for(lambda: not root.connection_state.connected, what="offline")
        queued = [
            asyncio.ensure_future(root.mutate("append_title", {"id": "p", "suffix": f",{i}"}))
            for i in range(1, 51)
        ]
        await wait_for(lambda: root.metrics.outbox_depth == 50, 5, "50 mutations in the outbox")
        gateway = RealtimeGateway(open_change_log(url), topics=["posts"], auth=AUTH)
        register(gateway)
        await gateway.start(port=port)
        try:
            await asyncio.wait_for(asyncio.gather(*queued), 30)
            expected = "0" + "".join(f",{i}" for i in range(1, 51))
            await wait_for(lambda: posts.value["p"].title == expected, what="all 50 applied")
            assert (await all_posts(gateway.log))["p"].title == expected
            assert root.metrics.outbox_depth == 0
        finally:
            await gateway.stop()


async def test_demo_mutations_validate_payloads_and_authorize_per_user(tmp_path: Path) -> None:
    from rxstore.gateway.demo import register_demo_mutations

    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    register_demo_mutations(gateway)
    try:
        ann_posts, bob_posts = PostStore(), PostStore()
        async with (
            RootStore(gateway.url, stores=[ann_posts], token=AUTH.issue("ann")) as ann,
            RootStore(gateway.url, stores=[bob_posts], token=AUTH.issue("bob")) as bob,
        ):
            await ann.mutate("save_post", {"id": "a1", "title": "mine", "author": "forged"})
            with pytest.raises(CallRejected) as bad:
                await ann.mutate("save_post", {"id": "a2", "title": "x", "likes": "many"})
            assert bad.value.code == "invalid_payload" and "likes" in str(bad.value)
            await bob.mutate("save_post", {"id": "a1", "title": "hijacked"})  # not bob's: no effect
            await bob.mutate("delete_post", {"id": "a1"})  # not bob's: no effect
            await wait_for(lambda: "a1" in bob_posts.value)
            await ann.mutate("save_post", {"id": "a1", "title": "edited"})
            await wait_for(
                lambda: ann_posts.value.get("a1") is not None and ann_posts.value["a1"].title == "edited"
            )
        rows = await all_posts(gateway.log)
        assert rows["a1"].author == "ann" and rows["a1"].title == "edited" and "a2" not in rows
    finally:
        await gateway.stop()


async def test_a_retry_is_acknowledged_with_the_first_result(gateway) -> None:
    async with RootStore(gateway.url, stores=[], token=AUTH.issue("ann"), topics=["posts"]) as root:
        message = {"id": "m-7", "name": "numbered_post", "args": {"id": "p7", "title": "seven"}}
        first = await root.call("rxstore:mutate", message)
        retry = await root.call("rxstore:mutate", message)
    assert first == {"ok": True, "result": "seven #1", "duplicate": False}
    assert retry == {"ok": True, "result": "seven #1", "duplicate": True}
    assert (await all_posts(gateway.log))["p7"].title == "seven #1"


async def test_a_mutation_id_reused_with_other_arguments_is_rejected(gateway) -> None:
    async with RootStore(gateway.url, stores=[], token=AUTH.issue("ann"), topics=["posts"]) as root:
        first = {"id": "m-8", "name": "numbered_post", "args": {"id": "p8", "title": "eight"}}
        assert (await root.call("rxstore:mutate", first))["ok"] is True
        other_args = {**first, "args": {"id": "p9", "title": "nine"}}
        other_name = {**first, "name": "create_post", "args": {"id": "p9", "title": "nine"}}
        for reused in (other_args, other_name):
            reply = await root.call("rxstore:mutate", reused)
            assert reply["ok"] is False and reply["error"] == "mutation_id_reused", reply
            assert "new id" in reply["message"]
    assert set(await all_posts(gateway.log)) == {"p8"}
