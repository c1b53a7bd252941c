"""Presence across gateway nodes through a real Redis: joins, updates and leaves cross; a node that
stops says so; a node killed with SIGKILL takes its members away on the others within its lease."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import attrs
import pytest

from rxstore import PresenceStore, RootStore
from rxstore.gateway import PresenceLimits, RealtimeGateway
from rxstore.gateway.metrics import Metrics
from rxstore.gateway.presence.relay import PresenceRelay
from rxstore.gateway.presence.roster import Roster
from tests.faults.harness import AUTH as NODE_AUTH
from tests.faults.harness import BACKOFF, GatewayProcess
from tests.gateway.harness import AUTH, start_gateway
from tests.waiting import wait_for

LIMITS = PresenceLimits(heartbeat=0.2, lease=1.0)


def names(store: PresenceStore) -> set[str]:
    return set(store.value.users())


async def member(url: str, user: str, auth: Any = AUTH, meta: Any = None) -> tuple[RootStore, PresenceStore]:
    store = PresenceStore("posts")
    root = RootStore(url, stores=[store], token=auth.issue(user), backoff=BACKOFF)
    await root.setup_realtime()
    await root.join_presence("posts", meta)
    return root, store


async def two_nodes(tmp_path, redis_url: str) -> tuple[RealtimeGateway, RealtimeGateway]:
    node1 = await start_gateway(f"sqlite:///{tmp_path}/n1.db", redis_url=redis_url, presence=LIMITS)
    node2 = await start_gateway(f"sqlite:///{tmp_path}/n2.db", redis_url=redis_url, presence=LIMITS)
    return node1, node2


@pytest.mark.timeout(60)
async def test_joins_updates_and_leaves_cross_nodes_and_a_stopping_node_takes_its_members(
    tmp_path, redis_server
) -> None:
    node1, node2 = await two_nodes(tmp_path, redis_server.url)
    roots: list[RootStore] = []
    try:
        ann, ann_room = await member(node1.url, "ann", meta={"s": 1})
        bob, bob_room = await member(node2.url, "bob")
        roots += [ann, bob]
        await wait_for(
            lambda: names(ann_room) == names(bob_room) == {"ann", "bob"}, what="both, on both nodes"
        )
        await ann.update_presence("posts", {"s": 2})
        await wait_for(
            lambda: [m.meta for m in bob_room.value if m.user == "ann"] == [{"s": 2}], what="update"
        )
        await ann.leave_presence("posts")
        await wait_for(lambda: names(bob_room) == {"bob"}, what="ann's leave on node 2")
        await ann.join_presence("posts")
        carl, _ = await member(node1.url, "carl")  # joins after a node knew the other: no resync needed
        roots.append(carl)
        await wait_for(lambda: names(bob_room) == {"ann", "bob", "carl"}, what="ann and carl again")
        await node1.stop()  # says bye: its members leave node 2 at once, not after the lease
        await wait_for(lambda: names(bob_room) == {"bob"}, LIMITS.lease / 2, what="node 1's members gone")
        assert node2.metrics.presence_nodes_expired._value.get() == 0
    finally:
        for root in roots:
            await root.teardown_realtime()
        async with asyncio.timeout(30):
            await node1.stop()
            await node2.stop()


@pytest.mark.timeout(60)
async def test_a_node_that_starts_later_gets_the_whole_state_of_the_others(tmp_path, redis_server) -> None:
    node1 = await start_gateway(f"sqlite:///{tmp_path}/n1.db", redis_url=redis_server.url, presence=LIMITS)
    roots: list[RootStore] = []
    node2: RealtimeGateway | None = None
    try:
        for user in ("ann", "bob"):
            roots.append((await member(node1.url, user))[0])
        node2 = await start_gateway(
            f"sqlite:///{tmp_path}/n2.db", redis_url=redis_server.url, presence=LIMITS
        )
        carl, carl_room = await member(node2.url, "carl")
        roots.append(carl)
        await wait_for(lambda: names(carl_room) == {"ann", "bob", "carl"}, what="node 1's members on node 2")
        await carl.teardown_realtime()
        await node2.stop()  # node 1 runs on: node 2 forgets what it knew of it (a restart hears it anew)
        assert node2.presence.roster.size() == 0
    finally:
        for root in roots:
            await root.teardown_realtime()
        async with asyncio.timeout(30):
            await node1.stop()
            if node2 is not None:
                await node2.stop()


@pytest.mark.timeout(60)
async def test_after_redis_restarts_the_nodes_resync_their_members(tmp_path, redis_server) -> None:
    """Changes published while Redis is down are lost; the numbers' gap makes the others ask for the state."""
    node1, node2 = await two_nodes(tmp_path, redis_server.url)
    roots: list[RootStore] = []
    try:
        ann, _ = await member(node1.url, "ann")
        bob, bob_room = await member(node2.url, "bob")
        roots += [ann, bob]
        await wait_for(lambda: names(bob_room) == {"ann", "bob"}, what="ann on node 2")
        resyncs = node2.metrics.presence_resyncs._value.get()
        redis_server.stop()
        await wait_for(lambda: names(bob_room) == {"bob"}, 10, what="node 1 silent: its members leave node 2")
        carl, _ = await member(node1.url, "carl")  # published to nobody
        roots.append(carl)
        redis_server.start()
        await wait_for(
            lambda: names(bob_room) == {"ann", "bob", "carl"}, 20, what="node 1's whole state again"
        )
        assert node2.metrics.presence_resyncs._value.get() > resyncs
    finally:
        for root in roots:
            await root.teardown_realtime()
        async with asyncio.timeout(30):
            await node1.stop()
            await node2.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("lease", [None, 1.0], ids=["default lease", "--presence-lease 1"])
async def test_a_node_killed_with_sigkill_takes_its_members_away_on_the_other_within_the_lease(
    tmp_path, redis_server, record_property, lease
) -> None:
    """Two ``rxstore serve --redis`` nodes (lease 5 s and heartbeat 1 s by default, or as
    ``--presence-lease`` sets them). Node 1 is killed with SIGKILL: its members are gone from node 2
    within ``lease + heartbeat / 2`` (plus slack for a loaded machine), and node 2's own members stay."""
    args = ["--redis", redis_server.url, *([] if lease is None else ["--presence-lease", str(lease)])]
    nodes = [
        GatewayProcess(f"sqlite:///{tmp_path}/n{i}.db", log_dir=tmp_path, name=f"n{i}", args=args)
        for i in (1, 2)
    ]
    roots: list[RootStore] = []
    try:
        for node in nodes:
            await node.start()
        for user in ("ann", "amy"):
            roots.append((await member(nodes[0].url, user, NODE_AUTH))[0])
        bob, bob_room = await member(nodes[1].url, "bob", NODE_AUTH)
        roots.append(bob)
        await wait_for(
            lambda: names(bob_room) == {"ann", "amy", "bob"}, 10, what="node 1's members on node 2"
        )
        killed = time.monotonic()
        nodes[0].kill()
        limits = PresenceLimits() if lease is None else PresenceLimits(heartbeat=lease / 5, lease=lease)
        bound = limits.node_gone_within
        waited = await wait_for(lambda: names(bob_room) == {"bob"}, bound + 3.0, what="node 1's members gone")
        record_property("kill_to_gone_s", round(time.monotonic() - killed, 2))
        assert waited <= bound + 3.0
        assert bob_room.value.synced
    finally:
        for root in roots:
            await root.teardown_realtime()
        for node in nodes:
            node.kill()


# -- the messages, one by one (no Redis) --------------------------------------------------------------


def relay_of(deliveries: list[dict[str, Any]]) -> PresenceRelay:
    return PresenceRelay(
        "redis://unused",
        node="me",
        roster=Roster(),
        deliver=deliveries.append,
        limits=LIMITS,
        metrics=Metrics(),
    )


def message(**fields: Any) -> str:
    return json.dumps({"n": "other", **fields})


def put(seq: int, user: str) -> str:
    return message(t="put", s=seq, c="room", m={"user": user, "conn": f"{user}-c", "meta": None})


def test_changes_in_order_apply_and_a_gap_asks_for_the_state_which_replaces_all() -> None:
    deliveries: list[dict[str, Any]] = []
    relay = relay_of(deliveries)
    relay.receive(message(t="state", s=1, ch={"room": [{"user": "ann", "conn": "ann-c", "meta": None}]}))
    relay.receive(put(2, "bob"))
    assert sorted(m.user for m in relay.roster.members("room")) == ["ann", "bob"]
    relay.receive(put(4, "dan"))  # 3 was lost: not applied, the state is asked for
    assert "dan" not in {m.user for m in relay.roster.members("room")}
    assert relay._outbox[-1] == {"t": "want", "n": "me", "of": "other"}
    relay.receive(message(t="state", s=4, ch={"room": [{"user": "dan", "conn": "dan-c", "meta": None}]}))
    assert [m.user for m in relay.roster.members("room")] == ["dan"]
    relay.receive(put(3, "old"))  # in the state already
    assert [m.user for m in relay.roster.members("room")] == ["dan"]
    assert [sorted(d) for d in deliveries] == [["room"]] * 3


def test_a_heartbeat_with_another_number_asks_for_the_state() -> None:
    relay = relay_of([])
    relay.receive(message(t="state", s=5, ch={}))
    relay.receive(message(t="beat", s=5))
    assert not relay._outbox
    relay.receive(message(t="beat", s=6))  # a change was missed
    assert list(relay._outbox) == [{"t": "want", "n": "me", "of": "other"}]


def test_bye_and_an_expired_lease_take_a_nodes_members_away() -> None:
    deliveries: list[dict[str, Any]] = []
    relay = relay_of(deliveries)
    relay.receive(message(t="state", s=1, ch={"room": [{"user": "ann", "conn": "ann-c", "meta": None}]}))
    relay._expire(time.monotonic() + LIMITS.lease / 2)
    assert relay.roster.count("room") == 1
    relay._expire(time.monotonic() + LIMITS.lease + 0.01)
    assert relay.roster.count("room") == 0 and relay.metrics.presence_nodes_expired._value.get() == 1
    relay.receive(message(t="state", s=1, ch={"room": [{"user": "ann", "conn": "ann-c", "meta": None}]}))
    relay.receive(message(t="bye"))
    assert relay.roster.count("room") == 0 and len(deliveries) == 4


def test_bad_messages_are_skipped_and_this_nodes_own_are_ignored() -> None:
    relay = relay_of([])
    for raw in ("not json", json.dumps({"t": "put"}), message(t="put", s=1, c="room", m={"user": 1})):
        relay.receive(raw)
    relay.receive(json.dumps({"n": "me", "t": "state", "s": 9, "ch": {"room": []}}))
    assert relay.roster.channels == 0 and relay.heard_self > 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", list(range(8)))
async def test_random_joins_updates_leaves_and_drops_on_two_nodes_converge_to_the_model(
    tmp_path, redis_server, seed
) -> None:
    """Eight users on two nodes join, update, leave, watch and drop at random (seeded), fast; once
    quiet, every store in the channel holds exactly the model's members, on both nodes."""
    import random

    rng = random.Random(seed)
    fast = attrs.evolve(LIMITS, updates_per_second=1e6, burst=10**6)
    node1 = await start_gateway(f"sqlite:///{tmp_path}/n1.db", redis_url=redis_server.url, presence=fast)
    node2 = await start_gateway(f"sqlite:///{tmp_path}/n2.db", redis_url=redis_server.url, presence=fast)
    users = [f"u{i}" for i in range(8)]
    stores = {user: PresenceStore("posts") for user in users}
    roots = {
        user: RootStore(
            (node1 if i % 2 else node2).url, stores=[stores[user]], token=AUTH.issue(user), backoff=BACKOFF
        )
        for i, user in enumerate(users)
    }
    model: dict[str, Any] = {}  # user -> meta, of those joined
    watching: set[str] = set()
    try:
        for root in roots.values():
            await root.setup_realtime()
        for step in range(300):
            user = rng.choice(users)
            root, roll = roots[user], rng.random()
            if roll < 0.35:
                await root.join_presence("posts", {"step": step})
                model[user] = {"step": step}
                watching.discard(user)
            elif roll < 0.6 and user in model:
                await root.update_presence("posts", {"step": step, "u": True})
                model[user] = {"step": step, "u": True}
            elif roll < 0.75:
                await root.leave_presence("posts")
                model.pop(user, None)
                watching.discard(user)
            elif roll < 0.85:
                await root.watch_presence("posts")
                model.pop(user, None)
                watching.add(user)
            elif roll < 0.92:  # its socket is cut: it leaves, reconnects and joins again with its metadata
                for node in (node1, node2):
                    for client in list(node._clients.values()):
                        if client.user.id == user and client.transport is not None:
                            client.transport.abort()

        def converged() -> bool:
            want = {user: [meta] for user, meta in model.items()}
            seers = [stores[user] for user in (*model, *watching)]
            return all(
                store.value.synced
                and {u: [m.meta for m in ms] for u, ms in store.value.users().items()} == want
                for store in seers
            )

        await wait_for(converged, 30, what=f"every store equal to the model {model}", interval=0.05)
    finally:
        for root in roots.values():
            await root.teardown_realtime()
        async with asyncio.timeout(30):
            await node1.stop()
            await node2.stop()
