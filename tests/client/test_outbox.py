"""rxstore/client/outbox.py: the Outbox on its own, over ``rxstore.testing.VirtualLink``.

The link is the public test seam (it records what is sent and acknowledges
every call with ``{"ok": True}``); ``link.up`` is what the outbox is told about
the connection, as the root tells it through ``connected``. Against real
sockets the outbox is exercised by tests/e2e/test_outbox_and_backoff.py,
tests/gateway/test_client_events_mutations.py and tests/faults/test_offline_mutations.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from rxstore.client.metrics import Metrics
from rxstore.client.outbox import Outbox, accepted
from rxstore.protocol.errors import CallRejected, CallTimeout, NotConnected, OutboxFull, RxStoreError
from rxstore.protocol.events import BROADCAST, MUTATE
from rxstore.stores.table import TableStore
from rxstore.testing import VirtualLink
from tests.waiting import wait_for

BOUND = 5.0
"""Seconds any single wait may take."""


@attrs.frozen
class Post:
    id: str
    title: str = ""


class Posts(TableStore[Post]):
    table = "posts"
    record_type = Post


@attrs.define
class Rig:
    link: VirtualLink
    metrics: Metrics
    outbox: Outbox
    errors: list[RxStoreError]


def rig(**options: Any) -> Rig:
    """An outbox over a VirtualLink that starts down."""
    link, metrics = VirtualLink(), Metrics()
    errors: list[RxStoreError] = []
    outbox = Outbox(link, metrics, connected=lambda: link.up, report=errors.append, **options)
    return Rig(link, metrics, outbox, errors)


def sent(link: VirtualLink) -> list[tuple[str, Any]]:
    return [(frame.name, frame.data) for frame in link.sent]


async def test_offline_calls_and_emits_wait_and_are_sent_in_their_order_on_resume() -> None:
    """Offline, a call, an emit and a call queue (depth 3, none sent); after resume they go out in order."""
    r = rig()
    first = asyncio.ensure_future(r.outbox.call("a", 1))
    await wait_for(lambda: len(r.outbox) == 1, timeout=BOUND, what="the first call queued")
    await r.outbox.emit("b", 2)
    second = asyncio.ensure_future(r.outbox.call("c", 3))
    await wait_for(lambda: len(r.outbox) == 3, timeout=BOUND, what="three messages queued")
    assert r.metrics.outbox_depth == 3 and r.link.sent == [] and not first.done()
    r.link.up = True
    r.outbox.resume()
    assert await asyncio.wait_for(first, BOUND) == {"ok": True}
    assert await asyncio.wait_for(second, BOUND) == {"ok": True}
    assert sent(r.link) == [("a", 1), ("b", 2), ("c", 3)]
    assert len(r.outbox) == 0 and r.metrics.outbox_depth == 0


async def test_resume_while_the_link_is_down_sends_nothing() -> None:
    """``resume`` asks the link first: down, the queue stays as it is."""
    r = rig()
    call = asyncio.ensure_future(r.outbox.call("a"))
    await wait_for(lambda: len(r.outbox) == 1, timeout=BOUND, what="the call queued")
    r.outbox.resume()
    await asyncio.sleep(0)  # a flush started here would have sent at its first step
    assert r.link.sent == [] and not call.done()
    await r.outbox.close()
    with pytest.raises(NotConnected):
        await call


async def test_a_full_outbox_refuses_call_emit_and_mutate_at_once_and_queues_nothing() -> None:
    """``limit=2``: 2 calls wait; a 3rd call, an emit and a mutation raise OutboxFull, depth stays 2."""
    r = rig(limit=2)
    waiting = [asyncio.ensure_future(r.outbox.call(name)) for name in ("a", "b")]
    await wait_for(lambda: len(r.outbox) == 2, timeout=BOUND, what="two calls queued")
    with pytest.raises(OutboxFull, match="outbox holds 2 messages; 'c' was not queued"):
        await asyncio.wait_for(r.outbox.call("c"), BOUND)  # raises at once, never waits
    with pytest.raises(OutboxFull):
        await r.outbox.emit("d")
    posts = Posts()
    with pytest.raises(OutboxFull):
        await asyncio.wait_for(
            r.outbox.mutate("like", {"id": "p1"}, optimistic={posts: {"p1": Post("p1", "liked")}}), BOUND
        )
    assert len(r.outbox) == 2 and r.metrics.outbox_depth == 2
    assert posts.pending == () and "p1" not in posts.value  # the optimistic row was rolled back
    await r.outbox.close()
    for call in waiting:
        with pytest.raises(NotConnected, match="torn down"):
            await call


async def test_a_mutation_carries_a_fresh_id_returns_its_result_and_settles_its_rows_after_settle_after() -> (
    None
):
    """Connected: the frame is {id, name, args}; the row shows at once and is dropped settle_after later."""
    r = rig(settle_after=0.05)
    r.link.up = True
    posts = Posts()
    row = Post("p1", "new")
    result = await r.outbox.mutate("rename", {"id": "p1"}, optimistic={posts: {"p1": row}})
    assert result is None  # VirtualLink acknowledges with {"ok": True}: no result
    ((name, payload),) = sent(r.link)
    assert name == MUTATE and payload["name"] == "rename" and payload["args"] == {"id": "p1"}
    assert isinstance(payload["id"], str) and len(payload["id"]) == 32
    assert posts.pending == (payload["id"],) and posts.value["p1"] == row
    await wait_for(lambda: posts.pending == (), timeout=BOUND, what="the settle timer")
    assert "p1" not in posts.value and r.errors == []
    await r.outbox.mutate("rename", {"id": "p1"})
    assert sent(r.link)[1][1]["id"] != payload["id"]  # each mutation its own id


async def test_a_mutation_offline_for_good_times_out_rolls_back_and_is_reported() -> None:
    """Offline past its timeout: CallTimeout, its row rolled back, the error reported, nothing sent."""
    r = rig()
    posts = Posts()
    mutation = asyncio.ensure_future(
        r.outbox.mutate("rename", {"id": "p1"}, optimistic={posts: {"p1": Post("p1")}}, timeout=0.05)
    )
    await wait_for(lambda: posts.pending != (), timeout=BOUND, what="the optimistic row")
    with pytest.raises(CallTimeout, match="'rxstore:mutate' not acknowledged in time"):
        await asyncio.wait_for(mutation, BOUND)
    assert posts.pending == () and [type(e) for e in r.errors] == [CallTimeout]
    r.link.up = True
    r.outbox.resume()
    await asyncio.sleep(0)  # a flush would skip the timed-out message at its first step
    assert r.link.sent == []
    await wait_for(lambda: len(r.outbox) == 0, timeout=BOUND, what="the timed-out message dropped")


async def test_close_stops_the_settle_timers_and_fails_what_is_queued() -> None:
    """After close, a pending row's settle timer never fires and a queued call raises NotConnected."""
    r = rig(settle_after=0.05)
    r.link.up = True
    posts = Posts()
    await r.outbox.mutate("rename", {"id": "p1"}, optimistic={posts: {"p1": Post("p1")}})
    r.link.up = False
    call = asyncio.ensure_future(r.outbox.call("a"))
    await wait_for(lambda: len(r.outbox) == 1, timeout=BOUND, what="the call queued")
    await r.outbox.close()
    with pytest.raises(NotConnected):
        await call
    await asyncio.sleep(0.1)  # twice settle_after: the point is that nothing happens
    assert len(posts.pending) == 1 and r.metrics.outbox_depth == 0


async def test_broadcast_sends_topic_event_and_data_and_raises_a_rejection() -> None:
    """``broadcast`` wraps its arguments in one rxstore:broadcast call; a negative ack is CallRejected."""
    r = rig()
    r.link.up = True
    await r.outbox.broadcast("posts", "typing", {"id": "p1"})
    assert sent(r.link) == [(BROADCAST, {"topic": "posts", "event": "typing", "data": {"id": "p1"}})]
    with pytest.raises(CallRejected, match="'typing' rejected: not subscribed") as caught:
        accepted({"ok": False, "error": "forbidden_topic", "message": "not subscribed"}, "'typing'")
    assert caught.value.code == "forbidden_topic"
