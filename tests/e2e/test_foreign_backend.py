"""A RootStore follows a Socket.IO server that is not rxstore's gateway (issue 13, item 7).

The server here is a plain python-socketio ``AsyncServer`` on aiohttp at
127.0.0.1 that behaves as the seed's NestJS gateway: it checks the token of
the auth payload and emits ``post_update`` with ``{type, post}`` (``type``:
created, updated or deleted). Nothing of rxstore's protocol: no seq, no
snapshot, no ``rxstore:live``. tests/interop/test_seed_server.py does the same
against the npm ``socket.io`` server package.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import pytest
import socketio
from aiohttp import web

from rxstore import (
    Backoff,
    ConnectionRefused,
    ConnectionStatus,
    DomainStore,
    Event,
    ProtocolError,
    RootStore,
    RxStoreError,
    StoreError,
    SyncState,
    TableStore,
    ValidationError,
)
from tests.waiting import wait_for

TOKEN = "seed-token"


@attrs.frozen
class Post:
    id: str
    title: str
    author: str = ""
    likes: int = 0


class SeedPostStore(TableStore[Post]):
    """The adapter as an overridden method: the seed's ``{type, post}`` -> ``(op, row)``."""

    table = "posts"
    record_type = Post

    def parse(self, payload: Any) -> tuple[str, Mapping[str, Any]] | None:
        if payload.get("type") == "ping":
            return None  # not a row change: ignored, not an error
        return payload["type"], payload["post"]


class PostActivity(DomainStore[tuple[str, ...]]):
    """The seed's own handler style: a DomainStore given every ``post_update`` payload too."""

    accepts = ("post_update",)
    initial: tuple[str, ...] = ()

    def reduce(self, state: tuple[str, ...], event: Event) -> tuple[str, ...]:
        return (*state, f"{event.data['type']} {event.data['post']['id']}")


@attrs.define
class SeedServer:
    """The seed's backend, in Python: posts in memory, ``post_update`` on every write."""

    sio: Any
    url: str
    posts: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    auths: list[Any] = attrs.field(factory=list)
    sids: list[str] = attrs.field(factory=list)
    drop_on_connect: bool = False
    """Accept the connection, then end it at once (a NestJS ``handleConnection`` that disconnects)."""

    async def write(self, kind: str, post: dict[str, Any]) -> None:
        if kind == "deleted":
            self.posts.pop(post["id"], None)
        else:
            self.posts[post["id"]] = post
        await self.sio.emit("post_update", {"type": kind, "post": post})


@pytest.fixture
async def server() -> AsyncIterator[SeedServer]:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state = SeedServer(sio, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any) -> None:
        state.auths.append(auth)
        if not isinstance(auth, dict) or auth.get("token") != TOKEN:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")  # no rxstore reason
        state.sids.append(sid)
        if state.drop_on_connect:
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(sio.disconnect(sid)))

    yield state
    await runner.cleanup()


def collect(root: RootStore) -> list[RxStoreError]:
    errors: list[RxStoreError] = []
    root.errors.subscribe(errors.append)
    return errors


async def test_table_store_with_parse_follows_created_updated_deleted_posts_beside_a_domain_store(
    server: SeedServer,
) -> None:
    """The adapted table holds exactly the server's posts; the seed-style DomainStore sees every event."""
    posts = posts_with_parse_argument()
    activity = PostActivity()
    root = RootStore(server.url, stores=[posts, activity], token=TOKEN)
    errors = collect(root)
    async with root:
        await server.write("created", {"id": "p1", "title": "Hello", "author": "ann", "likes": 0})
        await server.write("created", {"id": "p2", "title": "World", "author": "bob", "likes": 2})
        await server.write("created", {"id": "p3", "title": "Third", "author": "ann", "likes": 1})
        await server.write("updated", {"id": "p1", "title": "Hello again", "author": "ann", "likes": 5})
        await server.write("deleted", {"id": "p2"})
        await wait_for(lambda: len(activity.value) == 5, what="five post_update events", timeout=5.0)
        assert posts.value.to_dict() == {key: Post(**row) for key, row in server.posts.items()}
        assert activity.value == ("created p1", "created p2", "created p3", "updated p1", "deleted p2")
    assert errors == []
    assert posts.value.seq is None and root.cursor is None  # no seq anywhere: nothing to resume from


def posts_with_parse_argument() -> TableStore[Post]:
    """The adapter as a constructor argument, on a plain TableStore subclass."""

    class Posts(TableStore[Post]):
        table = "posts"
        record_type = Post

    return Posts(parse=lambda data: (data["type"], data["post"]))


async def test_adapted_table_is_live_once_connected_before_any_event_and_says_so(
    server: SeedServer,
) -> None:
    """LIVE (cursor None) right after connect, STALE when the link drops, LIVE after the reconnect."""
    posts = SeedPostStore()
    plain = posts_with_parse_argument()
    states: list[SyncState] = []
    posts.status.subscribe(lambda status: states.append(status.state))
    async with RootStore(
        server.url, stores=[posts, plain], token=TOKEN, backoff=Backoff(initial=0.01)
    ) as root:
        assert posts.sync.state is SyncState.LIVE and plain.sync.state is SyncState.LIVE
        assert posts.sync.cursor is None and len(posts.value) == 0
        await asyncio.wait_for(root.live(timeout=5), 0.5)  # no rxstore:live will come: not needed
        await server.sio.disconnect(server.sids[-1])
        await wait_for(
            lambda: len(server.sids) == 2 and root.connection_state.connected,
            what="the reconnect",
            timeout=5.0,
        )
        await wait_for(lambda: posts.sync.state is SyncState.LIVE, what="live again", timeout=5.0)
        await server.write("created", {"id": "p9", "title": "after the reconnect"})
        await wait_for(lambda: "p9" in posts.value, what="p9", timeout=5.0)
    assert SyncState.REPLAYING not in states
    assert states == [SyncState.STALE, SyncState.LIVE, SyncState.STALE, SyncState.LIVE, SyncState.STALE]


async def test_unusable_payloads_are_reported_naming_the_store_and_later_ones_still_apply(
    server: SeedServer,
) -> None:
    """A payload parse cannot use, an unknown type, a row without id or of the wrong shape: one error each."""
    posts = SeedPostStore()
    root = RootStore(server.url, stores=[posts], token=TOKEN)
    errors = collect(root)
    async with root:
        await server.sio.emit("post_update", {"type": "created"})  # no post: parse raises KeyError
        await server.sio.emit("post_update", {"type": "archived", "post": {"id": "p1", "title": "x"}})
        await server.sio.emit("post_update", {"type": "created", "post": {"title": "no id"}})
        await server.sio.emit("post_update", {"type": "created", "post": ["p1", "x"]})
        await server.sio.emit("post_update", {"type": "created", "post": {"id": "p1", "title": 7}})
        await server.sio.emit("post_update", {"type": "ping"})  # parse says: ignore it
        await server.write("created", {"id": "p2", "title": "fine"})
        await wait_for(lambda: "p2" in posts.value, what="the good payload after the bad ones", timeout=5.0)
    assert posts.value.to_dict() == {"p2": Post("p2", "fine")}
    assert len(errors) == 5, errors
    assert all(isinstance(error, StoreError) and error.store == "SeedPostStore" for error in errors)
    causes = [error.__cause__ for error in errors]
    assert [type(cause) for cause in causes] == [ProtocolError] * 4 + [ValidationError]
    messages = [str(error) for error in errors]
    assert "parse raised KeyError: 'post'" in messages[0]
    assert "unknown op 'archived'" in messages[1] and "created" in messages[1]
    assert "no usable 'id'" in messages[2]
    assert "gave a list as its row" in messages[3]
    assert "title" in messages[4]


async def test_no_duplicate_filtering_the_same_payload_sent_again_is_applied_again(
    server: SeedServer,
) -> None:
    """Without a seq nothing is "already seen": a repeated payload is applied as it comes, each time."""
    posts = SeedPostStore()
    activity = PostActivity()  # counts deliveries: the root hands each frame to both stores at once
    root = RootStore(server.url, stores=[posts, activity], token=TOKEN)
    errors = collect(root)
    titles: list[str | None] = []
    async with root:
        steps = [("created", "first"), ("updated", "second"), ("created", "first"), ("deleted", None)]
        steps += [("deleted", None), ("created", "first")]  # a delete of a missing row is no error
        for number, (kind, title) in enumerate(steps, 1):
            await server.write(kind, {"id": "p1", "title": title} if title else {"id": "p1"})
            await wait_for(
                lambda number=number: len(activity.value) == number, what=f"step {number}", timeout=5.0
            )
            post = posts.value.get("p1")
            titles.append(post.title if post else None)
    assert titles == ["first", "second", "first", None, None, "first"]
    assert errors == []


async def test_server_refusing_the_token_is_tried_max_attempts_times_then_given_up(
    server: SeedServer,
) -> None:
    """A refusal with a plain message (no rxstore reason) ends after Backoff.max_attempts, none after."""
    root = RootStore(
        server.url, stores=[SeedPostStore()], token="wrong", backoff=Backoff(initial=0.01, max_attempts=3)
    )
    errors = collect(root)
    with pytest.raises(ConnectionRefused) as refused:
        await asyncio.wait_for(root.setup_realtime(), 10)
    assert refused.value.reason == "unauthorized"
    assert "gave up after 3 failed attempts" in str(refused.value)
    assert not root.running  # the loop ended: no 4th attempt can follow
    assert len(server.auths) == 3 and server.sids == []
    state = root.connection_state
    assert state.status is ConnectionStatus.DISCONNECTED and state.reason == "unauthorized"
    assert errors[-1] is refused.value
    await root.teardown_realtime()
    assert len(server.auths) == 3


async def test_server_that_accepts_then_drops_at_once_is_given_up_after_max_attempts(
    server: SeedServer,
) -> None:
    """Dropped before a single frame, max_attempts times in a row: the root stops instead of looping.

    Each such link is a failed attempt: reported as a ``ConnectionRefused``
    (``disconnected_at_once``), and the third ends the loop with "gave up after 3".
    """
    server.drop_on_connect = True
    root = RootStore(
        server.url, stores=[SeedPostStore()], token=TOKEN, backoff=Backoff(initial=0.01, max_attempts=3)
    )
    errors = collect(root)
    try:
        await asyncio.wait_for(root.setup_realtime(), 10)
        await wait_for(
            lambda: root.connection_state.status is ConnectionStatus.DISCONNECTED or len(server.sids) > 5,
            what="giving up, or more attempts than max_attempts",
            timeout=5.0,
        )
        assert len(server.sids) == 3
        state = root.connection_state
        assert state.status is ConnectionStatus.DISCONNECTED and state.reason == "disconnected_at_once"
        assert [type(e) for e in errors] == [ConnectionRefused] * 3
        assert all(isinstance(e, ConnectionRefused) and e.reason == "disconnected_at_once" for e in errors)
        assert str(errors[-1]).startswith("gave up after 3 failed attempts: ")
    finally:
        await root.teardown_realtime()
