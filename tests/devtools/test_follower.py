"""Follower: a real RootStore following a real gateway, keeping frames, states and errors."""

from __future__ import annotations

from pathlib import Path

from rxstore import ConnectionRefused, ConnectionStatus, SyncState
from rxstore.devtools.follower import Follower
from rxstore.devtools.table_spec import TableSpec
from rxstore.gateway.demo import Post, save_post
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for


async def test_it_follows_each_table_once_keeps_its_frames_and_its_connection_states(tmp_path: Path) -> None:
    """A table named twice alike is one store; a subset is a subscription of its own; the frames come
    through the router's tap and the connection's states are kept with their times."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    await save_post(gateway.log, Post(id="p1", title="a", author="ann"))
    await save_post(gateway.log, Post(id="p2", title="b", author="bob"))
    specs = [TableSpec("posts"), TableSpec("posts"), TableSpec("posts", {"author": "bob"})]
    follower = Follower(gateway.url, token=AUTH.issue("alice"), tables=specs, frames=2)
    try:
        await follower.start()
        await follower.root.live()
        whole, bobs = follower.stores
        assert [store.event for store in follower.stores] == ["post_update", "inspect-1"]
        assert set(whole.value.rows) == {"p1", "p2"} and set(bobs.value.rows) == {"p2"}
        assert whole.sync.state is SyncState.LIVE and follower.root.router.recorder is follower.frames
        await save_post(gateway.log, Post(id="p3", title="c", author="bob"))
        await wait_for(lambda: "p3" in bobs.value, what="the live change")
        assert len(follower.frames) == 2 and follower.frames.seen >= 4  # snapshots, live, the change
        last = follower.frames.lines()[0]
        assert last.name == "rxstore:batch"
        assert last.summary == f"2 changes, seq {bobs.seq}: post_update INSERT x1, inspect-1 INSERT x1"
        statuses = [state.status for _, state in follower.states]
        assert statuses[-2:] == [ConnectionStatus.CONNECTING, ConnectionStatus.CONNECTED]
        assert follower.failed_attempts == 0 and not follower.errors
    finally:
        await follower.stop()
        await gateway.stop()
    assert not follower.root.running


async def test_a_refused_token_is_kept_as_the_last_error_and_the_link_disconnected(tmp_path: Path) -> None:
    """A bad token: refused for good, the refusal in ``errors`` and the state disconnected with its reason."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    follower = Follower(gateway.url, token="not-a-jwt", tables=[TableSpec("posts")])
    try:
        await follower.start()
        await wait_for(lambda: bool(follower.errors), what="the refusal")
        _, error = follower.errors[-1]
        assert isinstance(error, ConnectionRefused) and error.reason == "invalid_token"
        await wait_for(
            lambda: follower.root.connection_state.status is ConnectionStatus.DISCONNECTED,
            what="disconnected",
        )
        assert follower.root.connection_state.reason == "invalid_token"
    finally:
        await follower.stop()
        await gateway.stop()
