"""Frames joined from events encoded once are, byte for byte, the frames encoded per client.

Two levels: :class:`~rxstore.gateway.delivery.event_frames.EventFrames` against
``Delivery.batch_frames`` for random events, mixes and frame sizes (cut in the
same places; exact rows and huge integers fall back); and a real gateway's
``tailer.broadcast`` to random live-query subscriptions (``=``, ``in``, ranges,
columns, ids, a row filter, ``old`` as the key), each client's queued bytes with
the joined frames and without them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxstore.gateway.access.auth import TokenAuth, User
from rxstore.gateway.codec import ExactRow
from rxstore.gateway.delivery.event_frames import EventFrames, joins
from rxstore.gateway.delivery.queues import Client, OutFrame
from rxstore.gateway.delivery.wire import websocket_bytes
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
from rxstore.gateway.server import RealtimeGateway, Topic
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import Subset, Term

AUTH = TokenAuth(secret="rxstore-test-secret-0123456789abcdef0123")
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["Infinity", "é", "\u2028", "😀", '"quoted"\\']),
)
rows = st.dictionaries(st.sampled_from(["id", "title", "likes", "author", "x"]), values, max_size=5)
envelopes = st.fixed_dictionaries(
    {
        "seq": st.integers(1, 10**9),
        "topic": st.just("posts"),
        "op": st.sampled_from(["INSERT", "UPDATE", "DELETE"]),
        "record": st.one_of(st.none(), rows),
        "old": st.one_of(st.none(), rows),
        "ts": st.floats(0, 2e9),
    }
)
events = st.lists(
    st.tuples(st.sampled_from(["feed", "posts_mine", "ü-id", "x" * 64]), envelopes), max_size=12
)


def frame_bytes_of(frames: list[OutFrame]) -> list[tuple[bytes, int, int, int | None]]:
    """What a client gets of each frame: its websocket bytes, size in bytes and changes, last seq."""
    return [(websocket_bytes(f.packets or []), f.nbytes, f.size, f.last) for f in frames]


def gateway_at(tmp: Path, **options: Any) -> RealtimeGateway:
    """A gateway, never started: its delivery, tailer and live queries as a served one has them."""
    log = SQLiteChangeLog(f"sqlite:///{tmp / 'unused.db'}")
    return RealtimeGateway(log, topics=[Topic(name="posts")], auth=AUTH, **options)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> RealtimeGateway:
    return gateway_at(tmp_path_factory.mktemp("event-frames"))


@SETTINGS
@given(
    pool=events,
    mixes=st.lists(st.lists(st.integers(0, 11), max_size=14), max_size=6),
    size=st.integers(40, 600),
)
def test_joined_frames_equal_frames_encoded_per_client(
    gateway: RealtimeGateway, pool: list[tuple[str, dict[str, Any]]], mixes: list[list[int]], size: int
) -> None:
    """Any mix of shared events, any frame size: the same packets, cut at the same events."""
    delivery = gateway.delivery
    assert joins(delivery.sio.packet_class)
    pool_events = [[name, envelope] for name, envelope in pool]
    joined = EventFrames(delivery.sio.packet_class, size, delivery.batch_frames)
    saved = delivery.frame_bytes
    delivery.frame_bytes = size
    try:
        for mix in mixes:
            mine = [pool_events[i] for i in mix if i < len(pool_events)]
            assert frame_bytes_of(joined.frames(mine)) == frame_bytes_of(delivery.batch_frames(mine))
    finally:
        delivery.frame_bytes = saved
        joined.forget()


def test_an_event_orjson_cannot_write_as_the_frame_would_falls_back_to_the_whole_frame(
    gateway: RealtimeGateway,
) -> None:
    """An exact row (or an integer beyond 64 bits) makes the frame encoded whole, as before."""
    delivery = gateway.delivery
    joined = EventFrames(delivery.sio.packet_class, delivery.frame_bytes, delivery.batch_frames)
    plain = [
        "feed",
        {"seq": 1, "topic": "posts", "op": "INSERT", "record": {"id": "é"}, "old": None, "ts": 0},
    ]
    exact = [
        "feed",
        {"seq": 2, "topic": "posts", "op": "INSERT", "record": ExactRow(id=2**70), "old": None, "ts": 0},
    ]
    huge = [
        "feed",
        {"seq": 3, "topic": "posts", "op": "INSERT", "record": {"id": 2**64}, "old": None, "ts": 0},
    ]
    for mix in ([plain, exact], [huge], [plain, huge, plain]):
        assert frame_bytes_of(joined.frames(mix)) == frame_bytes_of(delivery.batch_frames(mix))


# -- the tailer: every client's bytes, with and without joined frames ------------------


def authorize(user: User, topic: str, row: Any) -> bool:
    """Users with an even number do not see rows of 7 likes."""
    return not (int(user.id[4:]) % 2 == 0 and row.get("likes") == 7)


def random_subset(rng: random.Random) -> Subset:
    authors = [f"a{n}" for n in range(6)]
    term = rng.choice(
        [
            Term("author", "=", rng.choice(authors)),
            Term("author", "in", tuple(rng.sample(authors, 2))),
            Term("likes", ">=", rng.randrange(10)),
        ]
    )
    columns = rng.choice([None, ("title",), ("likes", "author")])
    return Subset("posts", (term,), columns)


def random_changes(rng: random.Random, count: int) -> list[Change]:
    changes = []
    for seq in range(1, count + 1):
        post = f"p{rng.randrange(30)}"
        new = {"id": post, "title": rng.choice(["t", "é", "ü" * 40]), "author": f"a{rng.randrange(6)}",
               "likes": rng.randrange(10)}  # fmt: skip
        old = {**new, "author": f"a{rng.randrange(6)}", "likes": rng.randrange(10)}
        op = rng.choice([Op.INSERT, Op.UPDATE, Op.DELETE])
        record, before = (new, None) if op is Op.INSERT else (new, old) if op is Op.UPDATE else (None, old)
        changes.append(Change(seq, "posts", op, record, before, float(seq)))
    return changes


def broadcast_bytes(
    gateway: RealtimeGateway, clients: list[Client], changes: list[Change], batch: int
) -> dict[str, list[bytes]]:
    """Each client's queued frames' bytes after broadcasting ``changes`` ``batch`` at a time."""
    for client in clients:
        gateway.delivery.clear(client)
        client.cursor = 0
    gateway.tailer.head = 0
    for start in range(0, len(changes), batch):
        gateway.tailer.broadcast(changes[start : start + batch])
    assert len(gateway.tailer.clients) == len(clients), "a client was dropped"
    return {c.sid: [websocket_bytes(f.packets or []) for f in c.queue] for c in clients}


@pytest.mark.parametrize("row_filter", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_every_client_gets_byte_for_byte_what_it_got_before_for_random_subscription_mixes(
    tmp_path: Path, seed: int, row_filter: bool
) -> None:
    """A gateway's broadcast to 60 clients of random subscriptions (1-3 each, shared ids and
    subsets, columns, ranges, a row filter, key-only ``old``): the same frames, joined or not."""
    rng = random.Random(seed)
    gateway = gateway_at(
        tmp_path,
        authorize=authorize if row_filter else None,
        client_queue_limit=1_000_000,
        client_queue_bytes=1 << 30,
    )
    gateway.delivery.frame_bytes = rng.choice([300, 1 << 20])  # small: frames cut in several
    live, clients = gateway.live_queries, []
    for n in range(60):
        client = Client(f"sid{n}", User(f"user{n}"), frozenset(), cursor=0, live=True)
        subs = [live.new(client, rng.choice(["feed", "mine", f"own{n}"]) + str(k), random_subset(rng))
                for k in range(rng.randint(1, 3))]  # fmt: skip
        live.index_client(client, subs)
        gateway.tailer.clients[client.sid] = client
        clients.append(client)
    changes = random_changes(rng, 300)
    for batch in (1, 7, 200):
        assert gateway.tailer.event_frames() is not None
        joined = broadcast_bytes(gateway, clients, changes, batch)
        gateway.tailer.joined = False  # frames encoded per client, as before
        before = broadcast_bytes(gateway, clients, changes, batch)
        gateway.tailer.joined = None
        assert any(joined.values())
        assert joined == before
