"""Presence on one real gateway: join, update, leave, drop, authorization, limits, reconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxstore import CallRejected, PresenceDelta, PresenceStore, RootStore, SocketIOTransport
from rxstore.gateway import PresenceLimits, RealtimeGateway, User
from rxstore.gateway.delivery.queues import Client
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.presence.channels import PresenceChannels
from rxstore.gateway.presence.diff import Diff
from rxstore.protocol.presence import Member
from tests.bad_input.strategies import json_values
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for

FAST = PresenceLimits(updates_per_second=1000, burst=1000)


def users(store: PresenceStore) -> dict[str, list[Any]]:
    """User -> the metadata of each of its connections, sorted."""
    return {user: sorted(repr(m.meta) for m in members) for user, members in store.value.users().items()}


async def joined(
    gateway: RealtimeGateway,
    user: str,
    channel: str = "posts",
    meta: Any = None,
    url: str | None = None,
    **options: Any,
):
    store = PresenceStore(channel)
    root = RootStore(url or gateway.url, stores=[store], token=AUTH.issue(user), **options)
    await root.setup_realtime()
    await root.join_presence(channel, meta)
    return root, store


@pytest.fixture
async def gateway(tmp_path):
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", presence=FAST)
    yield gateway
    await gateway.stop()


async def test_a_join_gets_the_whole_list_then_each_join_update_and_leave(gateway) -> None:
    ann, ann_room = await joined(gateway, "ann", meta={"status": "online"})
    try:
        assert ann_room.value.synced and users(ann_room) == {"ann": ["{'status': 'online'}"]}
        deltas: list[PresenceDelta] = []
        ann_room.deltas.subscribe(deltas.append)
        bob, bob_room = await joined(gateway, "bob", meta={"status": "away"})
        # bob's store held the whole list (ann and bob) when join_presence returned
        assert users(bob_room) == {"ann": ["{'status': 'online'}"], "bob": ["{'status': 'away'}"]}
        await wait_for(lambda: "bob" in users(ann_room), what="bob's join at ann")
        await bob.update_presence("posts", {"status": "typing"})
        await wait_for(lambda: users(ann_room).get("bob") == ["{'status': 'typing'}"], what="bob's update")
        await bob.leave_presence("posts")
        await wait_for(lambda: "bob" not in users(ann_room), what="bob's leave")
        assert len(bob_room.value) == 0 and not bob_room.value.synced
        assert [(d.op, d.member.user) for d in deltas] == [
            ("join", "bob"),
            ("update", "bob"),
            ("leave", "bob"),
        ]
        await bob.teardown_realtime()
    finally:
        await ann.teardown_realtime()


async def test_one_user_two_connections_are_two_members_and_the_user_comes_from_the_token(gateway) -> None:
    tab1, room = await joined(gateway, "ann", meta={"user": "mallory", "tab": 1})
    tab2, _ = await joined(gateway, "ann", meta={"tab": 2})
    try:
        await wait_for(lambda: len(room.value) == 2, what="both tabs")
        assert set(room.value.users()) == {"ann"}  # a 'user' in the metadata is only metadata
        assert {m.conn for m in room.value} == {tab1._presence.conns["posts"], tab2._presence.conns["posts"]}
        await tab2.teardown_realtime()
        await wait_for(lambda: len(room.value) == 1, what="the closed tab's leave")
        assert [m.meta for m in room.value] == [{"user": "mallory", "tab": 1}]
    finally:
        await tab1.teardown_realtime()


async def test_a_dropped_client_leaves_at_once(gateway) -> None:
    """A client whose TCP connection is cut (killed, network gone with a reset) leaves every channel."""
    ann, room = await joined(gateway, "ann")
    bob, _ = await joined(gateway, "bob")
    try:
        await wait_for(lambda: len(room.value) == 2, what="bob")
        deltas: list[PresenceDelta] = []
        room.deltas.subscribe(deltas.append)  # bob's root reconnects and joins again: watch the leave itself
        for client in list(gateway._clients.values()):
            if client.user.id == "bob" and client.transport is not None:
                client.transport.abort()
        left = ("leave", "bob")
        await wait_for(lambda: left in [(d.op, d.member.user) for d in deltas], what="bob's leave (cut)")
    finally:
        await bob.teardown_realtime()
        await ann.teardown_realtime()


async def test_a_reconnect_gets_the_whole_list_again_not_the_missed_deltas(gateway) -> None:
    ann, room = await joined(gateway, "ann", meta={"n": 1})
    carl, _ = await joined(gateway, "carl")
    try:
        await wait_for(lambda: "carl" in users(room), what="carl")
        await ann.update_presence("posts", {"n": 2})
        frames: list[Any] = []  # from the cut on: the diff of ann's own update may still come before it
        synced: list[bool] = []  # each state's flag: ann rejoins at once, a poll could miss it

        def on_frame(frame: Any) -> None:
            if False in synced:
                frames.extend(e.data for e in frame)

        ann.events_named(room.event).subscribe(on_frame)
        room.state.subscribe(lambda state: synced.append(state.synced))
        for client in list(gateway._clients.values()):
            if client.user.id == "ann" and client.transport is not None:
                client.transport.abort()
        await wait_for(lambda: False in synced, what="ann's store stale")
        await carl.leave_presence("posts")  # while ann is away
        dave, _ = await joined(gateway, "dave")
        await wait_for(lambda: room.value.synced, 15, what="ann back")
        await wait_for(lambda: set(users(room)) == {"ann", "dave"}, what="the whole list")
        assert users(room)["ann"] == ["{'n': 2}"]  # joined again with its latest metadata
        assert frames[0]["type"] == "state", "the whole list first"
        # ann may be back before carl leaves (it rejoins at once): then his leave is live, not missed.
        # No diff may remove a member the last whole list did not hold: a missed delta replayed.
        held: set[tuple[str, str]] = set()
        for frame in frames:
            if frame["type"] == "state":
                held = {(m["user"], m["conn"]) for m in frame["members"]}
                continue
            held.update((m["user"], m["conn"]) for m in frame["joins"])
            for left in frame["leaves"]:
                assert (left["user"], left["conn"]) in held, f"a missed leave replayed: {frame}"
                held.discard((left["user"], left["conn"]))
        await dave.teardown_realtime()
    finally:
        await carl.teardown_realtime()
        await ann.teardown_realtime()


async def test_can_join_refuses_and_a_refused_join_is_not_joined(tmp_path) -> None:
    def can_join(user: User, channel: str) -> bool:
        if channel == "boom":
            raise RuntimeError("hook failed")
        return channel.startswith("room:") and user.id != "eve"

    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", can_join=can_join)
    try:
        async with RootStore(gateway.url, token=AUTH.issue("eve")) as eve:
            with pytest.raises(CallRejected) as refused:
                await eve.join_presence("room:1")
            assert refused.value.code == "forbidden_channel" and eve.presence_channels == {}
        async with RootStore(gateway.url, token=AUTH.issue("ann")) as ann:
            await ann.join_presence("room:1")
            for channel in ("posts", "boom"):  # a topic is no channel here; a raising hook denies
                with pytest.raises(CallRejected) as refused:
                    await ann.join_presence(channel)
                assert refused.value.code == "forbidden_channel"
        assert gateway.metrics.presence_refused.labels("forbidden_channel")._value.get() == 3
    finally:
        await gateway.stop()


async def test_the_default_can_join_is_the_topics_a_user_may_subscribe_to(tmp_path) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        async with RootStore(gateway.url, token=AUTH.issue("ann")) as ann:
            assert await ann.join_presence("posts")
            with pytest.raises(CallRejected) as refused:
                await ann.join_presence("secret-room")
            assert refused.value.code == "forbidden_channel"
    finally:
        await gateway.stop()


async def test_metadata_too_big_is_refused_and_changes_nothing(tmp_path) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", presence=PresenceLimits(max_meta_bytes=256))
    try:
        ann, room = await joined(gateway, "ann", meta={"ok": True})
        try:
            with pytest.raises(CallRejected) as refused:
                await ann.update_presence("posts", "x" * 300)
            assert refused.value.code == "meta_too_large"
            assert ann.presence_channels == {
                "posts": {"ok": True}
            }  # a reconnect joins with what the gateway has
            with pytest.raises(CallRejected) as refused:
                await ann.join_presence("other", "x" * 300)  # refused before can_join is asked
            assert refused.value.code == "meta_too_large"
            assert [m.meta for m in room.value] == [{"ok": True}]
            assert gateway.metrics.presence_refused.labels("meta_too_large")._value.get() == 2
        finally:
            await ann.teardown_realtime()
    finally:
        await gateway.stop()


async def test_metadata_that_is_not_json_is_refused(tmp_path) -> None:
    """JSON carries no NaN (refused at the wire); msgpack carries bytes, which JSON has not (refused here)."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    try:
        async with RootStore(gateway.url, token=AUTH.issue("ann")) as ann:
            ack = await ann.call("rxstore:presence_join", {"channel": "posts", "meta": float("nan")})
            assert ack["ok"] is False and ack["error"] == "invalid_payload"
            ack = await ann.call("rxstore:presence_join", {"channel": 7})
            assert ack["error"] == "bad_request"
            ack = await ann.call("rxstore:presence_update", {"channel": "posts", "meta": 1})
            assert ack["error"] == "not_joined"
    finally:
        await gateway.stop()
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app2.db", serializer="msgpack")
    try:
        transport = SocketIOTransport(serializer="msgpack")
        async with RootStore(gateway.url, token=AUTH.issue("ann"), transport=transport) as ann:
            ack = await ann.call("rxstore:presence_join", {"channel": "posts", "meta": {"blob": b"\x00"}})
            assert ack["ok"] is False and ack["error"] == "invalid_meta"
            assert gateway.presence.roster.count("posts") == 0
    finally:
        await gateway.stop()


async def test_limits_members_channels_and_updates_each_refused_and_counted(tmp_path) -> None:
    limits = PresenceLimits(max_members=2, max_channels=1, updates_per_second=1, burst=3)
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", presence=limits, can_join=lambda u, c: True)
    roots: list[RootStore] = []
    try:
        for user in ("ann", "bob", "carl"):
            root = RootStore(gateway.url, token=AUTH.issue(user))
            await root.setup_realtime()
            roots.append(root)
        ann, bob, carl = roots
        await ann.join_presence("room")
        await bob.join_presence("room")
        with pytest.raises(CallRejected) as refused:
            await carl.join_presence("room")
        assert refused.value.code == "too_many_members"
        with pytest.raises(CallRejected) as refused:
            await ann.join_presence("hall")
        assert refused.value.code == "too_many_channels"
        await ann.update_presence("room", 1)  # the burst is 3: join, update, update
        with pytest.raises(CallRejected) as refused:
            for n in range(2, 10):
                await ann.update_presence("room", n)
        assert refused.value.code == "too_many_updates"
        await ann.leave_presence("room")  # a leave is never refused for the rate
        assert [m.user for m in gateway.presence.roster.members("room")] == ["bob"]
        refusals = gateway.metrics.presence_refused
        for reason in ("too_many_members", "too_many_channels", "too_many_updates"):
            assert refusals.labels(reason)._value.get() >= 1
        await carl.join_presence("room")  # room for one more
    finally:
        for root in roots:
            await root.teardown_realtime()
        await gateway.stop()


async def test_metrics_count_members_and_channels(gateway) -> None:
    ann, _ = await joined(gateway, "ann")
    try:
        assert gateway.metrics.presence_members._value.get() == 1
        assert gateway.metrics.presence_channels._value.get() == 1
        body, _ = gateway.metrics_report()
        assert b"rxstore_presence_members 1.0" in body
    finally:
        await ann.teardown_realtime()
    await wait_for(lambda: gateway.metrics.presence_members._value.get() == 0, what="the leave counted")
    await asyncio.sleep(0)


class FreezingProxy:
    """Forwards 127.0.0.1:port to a gateway until frozen; then swallows every byte and closes nothing,
    as a network that went away does."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.frozen = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.frozen:
                writer.write(data)


async def test_a_client_whose_network_went_away_leaves_within_ping_interval_plus_ping_timeout(
    tmp_path,
) -> None:
    """No FIN, no reset: the gateway's pings go unanswered and it drops the client, which leaves."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db", ping_interval=0.5, ping_timeout=0.5)
    proxy = FreezingProxy(gateway.port)
    await proxy.start()
    try:
        ann, room = await joined(gateway, "ann")
        bob, _ = await joined(gateway, "bob", url=f"http://127.0.0.1:{proxy.port}")
        try:
            await wait_for(lambda: "bob" in users(room), what="bob")
            proxy.frozen = True
            await wait_for(
                lambda: "bob" not in users(room), 0.5 + 0.5 + 2.0, what="bob gone within the bound"
            )
        finally:
            await bob.teardown_realtime()
            await ann.teardown_realtime()
    finally:
        await proxy.close()
        await gateway.stop()


# -- the frames of one turn of the loop (no socket) ------------------------------------------------------


class Recorded:
    """A stand-in for the clients' send queues: what each client was sent."""

    def __init__(self) -> None:
        self.sent: dict[str, list[Any]] = {}

    def enqueue(self, client: Any, frame: Any) -> bool:
        self.sent.setdefault(client.sid, []).append(frame.data)
        return True

    async def drain(self, client: Any) -> bool:
        return True


async def test_the_changes_of_one_turn_go_out_as_one_diff_with_their_net_effect() -> None:
    """Bob updates twice, carl joins and leaves, dan joins, all in one turn: ann gets one frame with
    bob's last metadata and dan's join, nothing of carl."""
    delivery = Recorded()
    clients = {sid: Client(sid, User(sid), frozenset(), None) for sid in ("ann", "bob", "carl", "dan")}
    channels = PresenceChannels(
        delivery,  # type: ignore[arg-type]
        clients,
        Metrics(),
        can_join=lambda user, channel: True,
        limits=FAST,
        node="n1",
    )
    for sid in ("ann", "bob"):
        assert (await channels.join(clients[sid], {"channel": "room", "meta": 0}))["ok"]
    assert [f["type"] for f in delivery.sent["ann"]] == ["state", "diff"]  # bob's join, before his state
    await channels.update(clients["bob"], {"channel": "room", "meta": 1})
    await channels.update(clients["bob"], {"channel": "room", "meta": 2})
    channels.roster.put("n2", "room", Member("carl", "c"))  # as another node's changes arrive
    channels.deliver({"room": Diff(joins=(Member("carl", "c"),))})
    channels.deliver({"room": channels.roster.remove("n2", "room", ("carl", "c"))})
    channels.deliver({"room": channels.roster.put("n2", "room", Member("dan", "d", 7))})
    await asyncio.sleep(0)  # the turn ends: one frame
    frames = delivery.sent["ann"][2:]
    assert len(frames) == 1
    assert frames[0]["joins"] == [{"user": "dan", "conn": "d", "meta": 7}] and frames[0]["leaves"] == []
    assert [(m["user"], m["meta"]) for m in frames[0]["updates"]] == [("bob", 2)]
    assert delivery.sent["bob"][-1] == frames[0]  # the updater too


async def test_a_stopping_gateway_forgets_every_member(tmp_path) -> None:
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    ann, _ = await joined(gateway, "ann")
    try:
        assert gateway.presence.roster.size() == 1
        await gateway.stop()
        assert gateway.presence.roster.size() == 0 and gateway.metrics.presence_members._value.get() == 0
    finally:
        await ann.teardown_realtime()


CODES = {
    "bad_request",
    "forbidden_channel",
    "meta_too_large",
    "invalid_meta",
    "not_joined",
    "too_many_channels",
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["join", "update", "leave"]),
            st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {"channel": st.sampled_from(["a", "b", "", 7]), "meta": json_values},
                    optional={"watch": st.one_of(st.booleans(), json_values)},
                ),
            ),
        ),
        max_size=12,
    )
)
async def test_any_payload_gets_an_acknowledgement_and_the_roster_holds_only_what_was_accepted(steps) -> None:
    """Hostile payloads: each is acknowledged (ok, or a known error), none raises, and the roster holds
    exactly the channels whose last accepted event was a join (not a watch) or an update."""
    delivery = Recorded()
    client = Client("mallory", User("mallory"), frozenset(), None)
    limits = PresenceLimits(max_meta_bytes=64, updates_per_second=1e6, burst=10**6, max_channels=1)
    channels = PresenceChannels(
        delivery,  # type: ignore[arg-type]
        {"mallory": client},
        Metrics(),
        can_join=lambda user, channel: channel != "b",
        limits=limits,
        node="n1",
    )
    expected: dict[str, Any] = {}
    for event, data in steps:
        ack = await getattr(channels, event)(client, data)
        assert ack["ok"] is True or ack["error"] in CODES, ack
        watch = event == "join" and isinstance(data, dict) and data.get("watch") is True
        if ack["ok"] and event != "leave" and not watch:
            expected[data["channel"]] = data.get("meta")
        elif ack["ok"]:
            expected.pop(data["channel"], None)  # left, or watching: not listed
    await asyncio.sleep(0)
    assert {
        c: [m.meta for m in channels.roster.members(c)] for c in ("a", "b") if channels.roster.count(c)
    } == {c: [meta] for c, meta in expected.items()}


async def test_a_watcher_sees_the_members_without_being_one_and_can_watch_decides_who_may(tmp_path) -> None:
    """Staff may watch the room, only guests may join it; a member that turns watcher leaves the list."""
    gateway = await start_gateway(
        f"sqlite:///{tmp_path}/app.db",
        can_join=lambda user, channel: channel == "room" and user.id != "staff",
        can_watch=lambda user, channel: channel == "room" and user.id in ("staff", "bob"),
    )
    roots: list[RootStore] = []
    try:
        ann, ann_room = await joined(gateway, "ann", "room", {"s": 1})
        staff_room = PresenceStore("room")
        staff = RootStore(gateway.url, stores=[staff_room], token=AUTH.issue("staff"))
        roots += [ann, staff]
        await staff.setup_realtime()
        with pytest.raises(CallRejected) as refused:
            await staff.join_presence("room")
        assert refused.value.code == "forbidden_channel"
        assert await staff.watch_presence("room")
        assert users(staff_room) == {"ann": ["{'s': 1}"]} and staff.presence_watched == {"room"}
        bob, _ = await joined(gateway, "bob", "room")
        roots.append(bob)
        await ann.update_presence("room", {"s": 2})
        await wait_for(lambda: users(staff_room) == {"ann": ["{'s': 2}"], "bob": ["None"]}, what="live")
        assert set(users(ann_room)) == {"ann", "bob"}  # never the watcher
        await bob.watch_presence("room")  # bob stops being listed, and still sees
        await wait_for(lambda: set(users(ann_room)) == {"ann"}, what="bob unlisted")
        await ann.leave_presence("room")
        await wait_for(lambda: users(staff_room) == {}, what="ann's leave, at the watcher")
        with pytest.raises(CallRejected) as refused:
            await ann.watch_presence("room")  # ann may join, not watch
        assert refused.value.code == "forbidden_channel"
    finally:
        for root in roots:
            await root.teardown_realtime()
        await gateway.stop()
