"""The RootStore's connection loop under bad luck, and routing of one event name to several stores.

Refusals and token providers run against a real python-socketio ``AsyncServer``
on 127.0.0.1 that refuses each attempt as scripted; routing runs in virtual
time over :class:`~rxstore.testing.VirtualLink`. Every wait is bounded, so a
loop that hangs fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import socketio
from aiohttp import web
from reactivex import operators as ops

from rxstore import (
    Backoff,
    ConnectionRefused,
    ConnectionStatus,
    DomainStore,
    Event,
    ProtocolError,
    RootStore,
    RxStoreError,
    TableState,
    TableStore,
)
from rxstore.client.connection import Retry
from rxstore.protocol.errors import TokenProviderError
from rxstore.testing import batch_frame, change_frame, marbles, message_frame
from tests.waiting import wait_for

TOKEN = "secret-token"
FAST = Backoff(initial=0.01, factor=2.0, maximum=0.05, jitter=0.0)
"""Quick retries: a few attempts take well under a second."""
BOUND = 5.0
"""Seconds any single wait may take; the loop is meant to answer in far less."""

Refusal = Callable[[], bool]
"""What the server does with one connection attempt: raise to refuse, return False to reject."""


def gateway_refusal(reason: str) -> Refusal:
    """A refusal the way the rxstore gateway words it (message = reason, data = {reason, message})."""

    def refuse() -> bool:
        raise socketio.exceptions.ConnectionRefusedError(
            reason, {"reason": reason, "message": f"no: {reason}"}
        )

    return refuse


def third_party_refusal(message: str) -> Refusal:
    """A refusal by a plain python-socketio server: a message, no data."""

    def refuse() -> bool:
        raise socketio.exceptions.ConnectionRefusedError(message)

    return refuse


def rejected() -> bool:
    """A plain server's connect handler that returns False ("Connection rejected by server")."""
    return False


@attrs.define
class Server:
    """A python-socketio server that refuses the next attempts as planned, then accepts."""

    sio: Any
    url: str
    plan: list[Refusal] = attrs.field(factory=list)
    attempts: list[Any] = attrs.field(factory=list)
    sids: list[str] = attrs.field(factory=list)


async def start_server() -> tuple[Server, web.AppRunner]:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server = Server(sio, f"http://127.0.0.1:{port}")

    async def connect(sid: str, environ: Any, auth: Any) -> bool:
        server.attempts.append(auth)
        if server.plan and not server.plan.pop(0)():
            return False
        server.sids.append(sid)
        return True

    sio.on("connect", connect)

    return server, runner


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state, runner = await start_server()
    yield state
    await runner.cleanup()


def sent(records: list[Any]) -> list[Any]:
    """The values of a marble recording's on_next notifications."""
    return [r.value.value for r in records]


def watch(root: RootStore) -> tuple[list[RxStoreError], list[Any]]:
    errors: list[RxStoreError] = []
    states: list[Any] = []
    root.errors.subscribe(errors.append)
    root.connection.subscribe(states.append)
    return errors, states


# -- item 13: token providers -------------------------------------------------------------


async def test_a_raising_token_provider_is_reported_backed_off_and_retried_until_it_works(
    server: Server,
) -> None:
    """Each raise is one failed attempt on root.errors (cause kept); the next call's token connects."""
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise OSError(f"auth server down ({calls})")
        return TOKEN

    root = RootStore(server.url, token=token, backoff=FAST)
    errors, states = watch(root)
    retries: list[Retry] = []
    root.retries.subscribe(retries.append)
    try:
        await asyncio.wait_for(root.setup_realtime(), BOUND)
        assert root.connection_state.connected and calls == 3
        assert [type(e) for e in errors] == [TokenProviderError, TokenProviderError]
        assert [str(e.__cause__) for e in errors] == ["auth server down (1)", "auth server down (2)"]
        assert "OSError" in str(errors[0])
        assert [s.status for s in states] == [
            ConnectionStatus.IDLE,
            ConnectionStatus.CONNECTING,
            ConnectionStatus.RECONNECTING,  # one state for both failed attempts
            ConnectionStatus.CONNECTED,
        ]
        assert [r.attempt for r in retries] == [1, 2] and all(r.delay for r in retries)
        assert [a["token"] for a in server.attempts] == [TOKEN]  # no attempt without a token
    finally:
        await asyncio.wait_for(root.teardown_realtime(), BOUND)


@pytest.mark.parametrize("failure", ["raises", "returns None"])
async def test_a_token_provider_that_keeps_failing_gives_up_after_max_attempts(
    server: Server, failure: str
) -> None:
    """setup_realtime() raises instead of hanging; teardown does not re-raise; nothing reached the server."""
    calls = 0

    async def token() -> Any:
        nonlocal calls
        calls += 1
        if failure == "raises":
            raise RuntimeError("no refresh token")
        return None

    root = RootStore(server.url, token=token, backoff=attrs.evolve(FAST, max_attempts=3))
    errors, _ = watch(root)
    with pytest.raises(TokenProviderError, match="gave up after 3 failed attempts") as raised:
        await asyncio.wait_for(root.setup_realtime(), BOUND)
    assert calls == 3 and server.attempts == []
    if failure == "raises":
        assert isinstance(raised.value.__cause__, RuntimeError)
    assert len(errors) == 3 and errors[-1] is raised.value
    assert root.connection_state.status is ConnectionStatus.DISCONNECTED
    await asyncio.wait_for(root.teardown_realtime(), BOUND)


async def test_a_plain_function_as_token_provider_fails_setup_at_once_with_a_clear_error(
    server: Server,
) -> None:
    """Not retried (retrying cannot make it async): one call, a clear TokenProviderError, no hang."""
    calls = 0

    def token() -> str:
        nonlocal calls
        calls += 1
        return TOKEN

    root = RootStore(server.url, token=token, backoff=FAST)  # type: ignore[arg-type]
    errors, _ = watch(root)
    with pytest.raises(TokenProviderError, match=r"not an awaitable.*async def") as raised:
        await asyncio.wait_for(root.setup_realtime(), BOUND)
    assert raised.value.fatal and calls == 1 and server.attempts == []
    assert errors == [raised.value]
    assert root.connection_state.status is ConnectionStatus.DISCONNECTED
    await asyncio.wait_for(root.teardown_realtime(), BOUND)


@pytest.mark.parametrize("token", [b"bytes-token", 42, ["t"]], ids=["bytes", "int", "list"])
async def test_a_token_that_is_neither_a_string_nor_a_callable_is_refused_at_once(token: Any) -> None:
    """A TypeError at construction and at setup_realtime(token=...), before any connection."""
    with pytest.raises(TypeError, match="token must be"):
        RootStore("http://127.0.0.1:9", token=token)
    root = RootStore("http://127.0.0.1:9")
    with pytest.raises(TypeError, match="token must be"):
        await root.setup_realtime(token)
    await root.teardown_realtime()


# -- item 14: refusals and max_attempts ---------------------------------------------------------


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (gateway_refusal("unavailable"), "unavailable"),
        (third_party_refusal("Unauthorized"), "Unauthorized"),
        (rejected, "Connection rejected by server"),
    ],
    ids=["unavailable", "third-party Unauthorized", "handler returned False"],
)
async def test_max_attempts_is_honoured_on_a_retried_refusal(
    server: Server, refusal: Refusal, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With max_attempts=3 the server sees exactly 3 attempts, then setup raises: each attempt is logged
    (at INFO: the waiting setup_realtime() raises the outcome, reported once, not logged again at WARNING)."""
    server.plan = [refusal] * 100
    root = RootStore(server.url, token=TOKEN, backoff=attrs.evolve(FAST, max_attempts=3))
    errors, _ = watch(root)
    with (
        caplog.at_level(logging.INFO, logger="rxstore.root"),
        pytest.raises(ConnectionRefused, match="gave up after 3 failed attempts") as raised,
    ):
        await asyncio.wait_for(root.setup_realtime(), BOUND)
    assert raised.value.reason == reason
    assert len(server.attempts) == 3 and not root.running
    assert [e.reason for e in errors if isinstance(e, ConnectionRefused)] == [reason] * 3
    state = root.connection_state
    assert state.status is ConnectionStatus.DISCONNECTED and state.reason == reason
    logged = [r for r in caplog.records if r.name == "rxstore.root"]
    assert len(logged) == 3 and all(r.levelno == logging.INFO for r in logged)
    assert all(len(r.getMessage()) < 300 for r in logged)
    await asyncio.wait_for(root.teardown_realtime(), BOUND)
    assert len(server.attempts) == 3


async def test_bad_request_is_fatal_at_the_first_refusal(server: Server) -> None:
    """The gateway says the client is wrong: no retry even without max_attempts."""
    server.plan = [gateway_refusal("bad_request")] * 100
    root = RootStore(server.url, token=TOKEN, backoff=FAST)
    errors, _ = watch(root)
    with pytest.raises(ConnectionRefused) as raised:
        await asyncio.wait_for(root.setup_realtime(), BOUND)
    assert raised.value.reason == "bad_request" and len(server.attempts) == 1
    assert errors == [raised.value]
    assert root.connection_state.reason == "bad_request"
    await asyncio.wait_for(root.teardown_realtime(), BOUND)


async def test_max_attempts_counts_failures_in_a_row_and_restarts_after_a_connection(
    server: Server,
) -> None:
    """2 refusals, connected (a frame served), dropped, 2 refusals, connected: max_attempts=3 not reached."""
    unavailable = gateway_refusal("unavailable")
    server.plan = [unavailable, unavailable]
    root = RootStore(server.url, token=TOKEN, backoff=attrs.evolve(FAST, max_attempts=3))
    errors, _ = watch(root)
    try:
        await asyncio.wait_for(root.setup_realtime(), BOUND)
        await server.sio.emit("welcome", {}, to=server.sids[-1])  # a link that served a frame
        await wait_for(lambda: root.metrics.frames == 1, timeout=BOUND, what="the frame")
        server.plan = [unavailable, unavailable]
        await server.sio.disconnect(server.sids[-1])
        await wait_for(lambda: len(server.sids) == 2 and root.connection_state.connected, timeout=BOUND)
        assert len(server.attempts) == 6 and root.metrics.reconnects == 1
        assert [e.reason for e in errors if isinstance(e, ConnectionRefused)] == ["unavailable"] * 4
    finally:
        await asyncio.wait_for(root.teardown_realtime(), BOUND)


async def test_a_link_dropped_before_any_frame_is_a_failed_attempt_unless_it_outlived_stable_after(
    server: Server,
) -> None:
    """Refused, accepted and dropped at once (no frame), refused: the 3rd failure in a row gives up.

    With ``stable_after=0`` the same silent link counts as a connection: the run restarts.
    """
    unavailable = gateway_refusal("unavailable")
    for stable_after, gives_up in [(5.0, True), (0.0, False)]:
        server.plan = [unavailable]
        backoff = attrs.evolve(FAST, max_attempts=3, stable_after=stable_after)
        root = RootStore(server.url, token=TOKEN, backoff=backoff)
        errors, _ = watch(root)
        try:
            await asyncio.wait_for(root.setup_realtime(), BOUND)
            assert root.running
            server.plan = [unavailable]
            await server.sio.disconnect(server.sids[-1])
            await wait_for(
                lambda r=root: (
                    r.connection_state.status is ConnectionStatus.DISCONNECTED or len(server.attempts) == 4
                ),
                timeout=BOUND,
                what="giving up, or the attempt after the refusal",
            )
            reasons = [e.reason for e in errors if isinstance(e, ConnectionRefused)]
            assert root.running is not gives_up
            if gives_up:
                assert root.connection_state.status is ConnectionStatus.DISCONNECTED
                assert len(server.attempts) == 3
                assert reasons == ["unavailable", "disconnected_at_once", "unavailable"]
                assert str(errors[-1]).startswith("gave up after 3 failed attempts: ")
            else:
                assert len(server.attempts) == 4 and reasons == ["unavailable", "unavailable"]
        finally:
            await asyncio.wait_for(root.teardown_realtime(), BOUND)
            server.attempts.clear()


async def test_an_unavailable_node_is_left_for_the_next_url(server: Server) -> None:
    """``unavailable`` means this node is going away: the next attempt goes to the next URL."""
    other, runner = await start_server()
    server.plan = [gateway_refusal("unavailable")] * 100
    root = RootStore([server.url, other.url], token=TOKEN, backoff=attrs.evolve(FAST, max_attempts=2))
    try:
        await asyncio.wait_for(root.setup_realtime(), BOUND)
        assert root.connection_state.url == other.url
        assert len(server.attempts) == 1 and len(other.sids) == 1
    finally:
        await asyncio.wait_for(root.teardown_realtime(), BOUND)
        await runner.cleanup()


def test_max_attempts_below_one_is_refused() -> None:
    """``max_attempts=0`` would give up before trying: a ValueError names the field."""
    with pytest.raises(ValueError, match="max_attempts"):
        Backoff(max_attempts=0)


# -- item 15: a TableStore does not block other stores of its event name --------------------------


@attrs.frozen
class Post:
    id: str
    title: str = ""


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


class PostActivity(DomainStore[tuple[str, ...]]):
    """Accepts the posts table's event name too: folds what kind of event each one was."""

    accepts = ("post_update",)
    initial = ()

    def reduce(self, state: tuple[str, ...], event: Event) -> tuple[str, ...]:
        return (*state, event.kind.value)


def _keys(state: TableState[Post]) -> tuple[str, ...]:
    return tuple(sorted(state.rows))


def _kind(event: Event) -> str:
    return event.kind.value


TYPING = message_frame("post_update", {"typing": "alice"})
"""Not a change envelope, under the posts table's event name."""


def test_a_message_under_a_table_event_name_reaches_the_other_stores_of_that_name() -> None:
    """The domain store folds it, the table keeps its rows and cursor and reports it as its own error."""
    with marbles() as m:
        posts, activity = PostStore(), PostActivity()
        root = m.root(
            [posts, activity],
            server="-a-t-b",
            values={
                "a": change_frame("posts", 1, "INSERT", {"id": "p1"}),
                "t": TYPING,
                "b": change_frame("posts", 2, "INSERT", {"id": "p2"}),
            },
        )
        seen = m.record(activity.state)
        rows = m.record(posts.state.pipe(ops.map(_keys)))
        hot = m.record(root.events.pipe(ops.map(_kind)))
        errors = m.record(root.errors)
        m.run()
    one, two = ("change",), ("change", "message")
    assert seen == m.expected("ab-c-d", {"a": (), "b": one, "c": two, "d": (*two, "change")})
    assert rows == m.expected("ab---c", {"a": (), "b": ("p1",), "c": ("p1", "p2")})
    assert hot == m.expected("-a-b-a", {"a": "change", "b": "message"})
    assert [r.time for r in errors] == [3]
    error = sent(errors)[0]
    assert isinstance(error, ProtocolError) and error.store == "PostStore" and error.event == "post_update"
    assert "PostStore" in str(error) and "not a change envelope" in str(error)
    assert root.cursor == 2 and posts.seq == 2


def test_a_message_inside_a_batch_reaches_the_other_stores_and_the_batch_applies() -> None:
    """A batch mixing changes with the message: every store gets its share, one error, nothing lost."""
    with marbles() as m:
        posts, activity = PostStore(), PostActivity()
        root = m.root(
            [posts, activity],
            server="-x",
            values={
                "x": batch_frame(
                    [
                        change_frame("posts", 1, "INSERT", {"id": "p1"}),
                        TYPING,
                        change_frame("posts", 2, "INSERT", {"id": "p2"}),
                    ]
                )
            },
        )
        errors = m.record(root.errors)
        m.run()
    assert activity.value == ("change", "message", "change")
    assert set(posts.value.rows) == {"p1", "p2"} and posts.seq == 2 and root.cursor == 2
    assert [type(e) for e in sent(errors)] == [ProtocolError]
    assert sent(errors)[0].store == "PostStore"


def test_a_broken_change_envelope_is_still_dropped_for_every_store() -> None:
    """A payload with ``op`` and ``seq`` is a change: malformed, the root reports it and nobody gets it."""
    with marbles() as m:
        posts, activity = PostStore(), PostActivity()
        root = m.root(
            [posts, activity],
            server="-x",
            values={"x": message_frame("post_update", {"seq": "seven", "op": "INSERT", "topic": "posts"})},
        )
        errors = m.record(root.errors)
        m.run()
    assert activity.value == () and len(posts.value) == 0 and root.cursor is None
    assert len(errors) == 1 and sent(errors)[0].store is None


def test_an_outage_logs_one_warning_as_the_retries_start_and_one_as_they_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a waiting first connection: 5 failed attempts in a row log 2 WARNINGs (the first failure,
    the connection that ends the run), the 4 attempts between at INFO (root.retries has each)."""
    backoff = Backoff(initial=1.0, factor=1.0, jitter=0.0)
    with caplog.at_level(logging.INFO, logger="rxstore.root"), marbles() as m:
        root = m.root([], link="c-(xu)----c", backoff=backoff)
        retries = m.record(root.retries)
        m.run()
    assert len(retries) == 5 and root.connection_state.connected
    logged = [r for r in caplog.records if r.name == "rxstore.root"]
    warnings = [r.getMessage() for r in logged if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "attempt 1 to virtual://gateway failed" in warnings[0]
    assert warnings[1] == "[RootStore] connected to virtual://gateway after 5 failed attempts"
    assert sum("failed (" in r.getMessage() and r.levelno == logging.INFO for r in logged) == 4


# -- teardown -------------------------------------------------------------------------


class GatedTransport:
    """A transport whose connect waits, with ``asyncio.wait_for`` as python-socketio's does,
    until the test opens its gate."""

    def __init__(self) -> None:
        self.gate: asyncio.Future[None] | None = None
        self.connects = 0

    def bind(self, on_frame: Any, on_lost: Any) -> None:
        pass

    async def connect(self, url: str, auth: Any) -> None:
        self.connects += 1
        self.gate = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(self.gate, BOUND * 4)

    async def disconnect(self) -> None:
        pass

    async def emit(self, event: str, data: Any) -> None:
        pass

    async def call(self, event: str, data: Any, *, timeout: float) -> Any:
        return {"ok": True}


async def test_a_teardown_ends_the_connection_loop_even_when_python_loses_its_cancellation() -> None:
    """A connect that succeeds in the loop iteration in which the root is torn down: Python 3.11's
    ``asyncio.wait_for`` then returns instead of raising, and the cancellation is lost. The loop
    is cancelled again until it ends, so the teardown returns (before, it waited forever while a
    loop that had lost its cancel reconnected to a stopped gateway: the flake of
    ``test_50_mutations_queued_offline_apply_once_in_order_after_reconnect``, issue 28 item 7)."""
    transport = GatedTransport()
    root = RootStore("http://gateway.invalid", stores=[], token=TOKEN, transport=transport)
    await root.setup_realtime(wait=False)
    await wait_for(lambda: transport.gate is not None, BOUND, "the first connect under way")
    assert transport.gate is not None
    transport.gate.set_result(None)  # the connect succeeds, and in the same step:
    async with asyncio.timeout(BOUND) as bound:  # (wait_for would run the teardown a step later)
        await root.teardown_realtime()
    assert not bound.expired(), "the teardown waited for a loop that had lost its cancellation"
    assert root.connection_state.status is ConnectionStatus.DISCONNECTED
    assert transport.connects == 1
