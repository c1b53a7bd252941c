"""docs/examples/quickstart.py and gateway_app.py: the code of the Quickstart and Gateway pages."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rxstore import CallRejected, RootStore
from rxstore.gateway.demo import Post, create_demo_schema, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.docs import EXAMPLES, load_example
from tests.gateway.harness import AUTH, SECRET, PostStore, start_gateway
from tests.waiting import wait_for

quickstart = load_example("quickstart")
gateway_app = load_example("gateway_app")


async def test_quickstart_prints_the_table_as_it_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    out = ""
    try:
        task = asyncio.ensure_future(quickstart.main(gateway.url, AUTH.issue("alice"), 60))
        await wait_for(lambda: "posts: 0" in capsys.readouterr().out, what="empty table")
        await save_post(gateway.log, Post(id="p1", title="Hello", author="bob", body="ignored"))

        def printed() -> bool:
            nonlocal out
            out += capsys.readouterr().out
            return "p1 is now Post(id='p1', title='Hello', author='bob', likes=0)" in out

        await wait_for(printed, what="p1")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await gateway.stop()
    assert "posts: 1" in out


async def test_quickstart_runs_as_a_script(tmp_path: Path) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    await save_post(gateway.log, Post(id="p1", title="Hello"))
    env = {**os.environ, "RXSTORE_URL": gateway.url, "RXSTORE_TOKEN": AUTH.issue("alice")}
    script = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "quickstart.py"), stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert script.stdout is not None
        lines: list[str] = []
        while "posts: 1" not in lines:
            line = await asyncio.wait_for(script.stdout.readline(), 30)
            assert line, f"the script ended early: {lines}"
            lines.append(line.decode().strip())
        assert "connection: connected" in lines
        assert "posts: 0" not in lines  # root.live(): never the count of a table still replaying
    finally:
        script.terminate()
        await script.wait()
        await gateway.stop()


@pytest.fixture
async def app_gateway(tmp_path: Path) -> AsyncIterator[RealtimeGateway]:
    gateway = gateway_app.build_gateway(f"sqlite:///{tmp_path}/app.db", SECRET)
    await gateway.log.open()
    await create_demo_schema(gateway.log)
    await gateway.start(port=0)
    yield gateway
    await gateway.stop()


async def test_private_posts_reach_their_author_and_admins_only(app_gateway: RealtimeGateway) -> None:
    log = app_gateway.log
    await save_post(log, Post(id="pub", title="for everyone", author="ann"))
    await save_post(log, Post(id="secret", title="ann's draft", author="ann", private=True))
    stores = {user: PostStore() for user in ("ann", "bob", "root")}
    tokens = {"ann": AUTH.issue("ann"), "bob": AUTH.issue("bob"), "root": AUTH.issue("root", role="admin")}
    roots = [RootStore(app_gateway.url, stores=[stores[u]], token=tokens[u]) for u in stores]
    for root in roots:
        await root.setup_realtime()
    try:
        await wait_for(lambda: all(store.seq == 2 for store in stores.values()), what="snapshots")
        assert set(stores["ann"].value.rows) == {"pub", "secret"}
        assert set(stores["bob"].value.rows) == {"pub"}
        assert set(stores["root"].value.rows) == {"pub", "secret"}
        # Made public: bob sees it appear (the UPDATE reaches him as an INSERT).
        await save_post(log, Post(id="secret", title="published", author="ann"))
        await wait_for(lambda: "secret" in stores["bob"].value, what="revealed row")
        assert stores["bob"].value["secret"].title == "published"
    finally:
        for root in roots:
            await root.teardown_realtime()


async def test_like_post_mutation_applies_once_and_only_to_visible_posts(
    app_gateway: RealtimeGateway,
) -> None:
    log = app_gateway.log
    await save_post(log, Post(id="pub", title="for everyone", author="ann"))
    await save_post(log, Post(id="secret", title="ann's draft", author="ann", private=True))
    posts = PostStore()
    async with RootStore(app_gateway.url, stores=[posts], token=AUTH.issue("bob")) as bob:
        assert await bob.mutate("like_post", {"id": "pub"}) == {"liked": "pub"}
        await wait_for(lambda: "pub" in posts.value and posts.value["pub"].likes == 1, what="like")
        await bob.mutate("like_post", {"id": "secret"})  # acknowledged, but changes nothing
        with pytest.raises(CallRejected) as rejected:
            await bob.mutate("like_post", {"post": "pub"})
        assert rejected.value.code == "invalid_payload"
    rows = await log.fetch("SELECT id, likes FROM posts ORDER BY id")
    assert rows == [{"id": "pub", "likes": 1}, {"id": "secret", "likes": 0}]
