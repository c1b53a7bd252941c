"""Subscriptions alike share one event per change, and clients given the same events share frames.

A gateway (not started) routes changes through ``tailer.broadcast`` to clients whose
subscriptions were parsed apart (separate but equal subsets, as from separate
requests): equal subsets are one object on the gateway (``LiveQueries.new``), so each
change is made into one event for all of them, encoded once, and the clients given the
very same events are queued the very same frames.
"""

from __future__ import annotations

from pathlib import Path

from rxstore.gateway.access.auth import User
from rxstore.gateway.delivery.queues import Client
from rxstore.gateway.log.sqlite.changelog import SQLiteChangeLog
from rxstore.gateway.queries.subscriptions import Subscription
from rxstore.gateway.server import RealtimeGateway, Topic
from rxstore.protocol.events import Change, Op
from rxstore.protocol.subsets import parse_subscription
from tests.gateway.harness import AUTH


def gateway_with_clients(
    tmp_path: Path, authors: list[str]
) -> tuple[RealtimeGateway, list[Client], list[Subscription]]:
    """A gateway (never started) with one client per author, each following ``author = it``."""
    gateway = RealtimeGateway(
        SQLiteChangeLog(f"sqlite:///{tmp_path / 'unused.db'}"), topics=[Topic(name="posts")], auth=AUTH
    )
    live, clients, subs = gateway.live_queries, [], []
    for i, author in enumerate(authors):
        client = Client(f"sid{i}", User(f"user{i}"), frozenset(), cursor=0, live=True)
        _, subset, _ = parse_subscription(
            {"id": "mine", "topic": "posts", "where": [["author", "=", author]]}
        )
        sub = live.new(client, "mine", subset)
        live.index_client(client, [sub])
        gateway.tailer.clients[client.sid] = client
        clients.append(client)
        subs.append(sub)
    return gateway, clients, subs


def change(seq: int, author: str) -> Change:
    row = {"id": f"p{seq}", "author": author, "title": "t"}
    return Change(seq=seq, topic="posts", op=Op.INSERT, record=row, old=None, ts=0.0)


def test_equal_subsets_parsed_apart_are_one_object_on_the_gateway(tmp_path: Path) -> None:
    _, _, subs = gateway_with_clients(tmp_path, ["ann", "ann", "bob"])
    assert subs[0].subset is subs[1].subset and subs[0].subset == subs[1].subset
    assert subs[2].subset is not subs[0].subset


def test_clients_alike_get_the_same_frames_and_others_their_own(tmp_path: Path) -> None:
    """Three of ann's followers share each frame; bob's follower gets only bob's change."""
    gateway, clients, _ = gateway_with_clients(tmp_path, ["ann", "ann", "ann", "bob"])
    gateway.tailer.broadcast([change(1, "ann"), change(2, "bob"), change(3, "ann")])
    ann = [list(client.queue) for client in clients[:3]]
    assert len(ann[0]) == 1 and all(len(q) == 1 and q[0] is ann[0][0] for q in ann), "one shared frame"
    assert ann[0][0].size == 2  # changes 1 and 3
    (bob,) = clients[3].queue
    assert bob is not ann[0][0] and bob.size == 1
