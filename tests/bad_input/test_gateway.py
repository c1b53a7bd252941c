"""Bad input thrown at a real gateway (SQLite, 127.0.0.1) by raw Socket.IO clients.

One gateway serves the whole module, with ``alice`` (a ``RootStore`` following
posts, notes and secret) connected throughout. Every property checks each
input's answer (a refusal with a reason, or an ack ``{"ok": false, "error":
<code>, "message": ...}``), that rejected input wrote no row to the change log
or to the applied-mutations table, and at the end of each test that alice got
every change written meanwhile exactly once, in order, equals the tables,
received every accepted broadcast once, never reconnected and saw no error, and
that ``/healthz`` says ok.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rxstore.gateway.access.auth import TokenAuth
from rxstore.gateway.access.guarded_websockets import websocket_limit
from rxstore.gateway.demo import Post, save_post
from rxstore.protocol.events import BROADCAST, MUTATE
from tests.bad_input.cases import examples, ran
from tests.bad_input.gateway_env import (
    CHANGE_EVENTS,
    MAX_FRAME,
    SERVED,
    SOCKETIO_RESERVED,
    GatewayEnv,
    close_client,
    raw_client,
)
from tests.bad_input.strategies import big_ints, json_values, non_dicts, not_str, texts
from tests.gateway.harness import AUTH, SECRET
from tests.waiting import wait_for

MISSING: Any = object()
"""A field left out of the payload."""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayEnv]:
    gateway_env = GatewayEnv(tmp_path_factory.mktemp("bad-input-gateway"))
    gateway_env.run(gateway_env.start())
    try:
        yield gateway_env
        gateway_env.run(gateway_env.check_alice())
        gateway_env.run(gateway_env.check_gateway())
    finally:
        gateway_env.close()


def _settle(env: GatewayEnv) -> None:
    """The end of every test: alice and the gateway are unaffected."""
    env.run(env.check_alice())
    env.run(env.check_gateway())


def _assert_error_ack(ack: Any, codes: set[str] | frozenset[str]) -> None:
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    assert ack.get("error") in codes, ack
    assert isinstance(ack.get("message"), str) and ack["message"].strip(), ack


def _payload(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not MISSING}


# -- connect: garbage auth payloads ------------------------------------------------

_OTHER = TokenAuth(secret="another-secret-that-is-long-enough!!")
_TOKENS: dict[str, tuple[Any, str | None]] = {
    # kind -> (token factory, refusal reason)
    "valid": (lambda: AUTH.issue("mallory"), None),
    "expired": (lambda: AUTH.issue("mallory", ttl=-10), "token_expired"),
    "forged": (lambda: _OTHER.issue("mallory"), "invalid_token"),
    "no sub": (lambda: jwt.encode({"name": "mallory"}, SECRET, algorithm="HS256"), "invalid_token"),
    "empty sub": (lambda: AUTH.issue(""), "invalid_token"),
    "alg none": (lambda: jwt.encode({"sub": "alice"}, "", algorithm="none"), "invalid_token"),
}

auth_tokens = st.one_of(
    st.sampled_from(sorted(_TOKENS)).map(lambda kind: (kind, None, _TOKENS[kind][1])),
    texts.map(lambda t: ("value", t, "invalid_token")),
    not_str.map(lambda v: ("value", v, "invalid_token")),
    st.just(("missing", None, "invalid_token")),
)

_ALLOWED = ["posts", "notes"]
auth_topics = st.one_of(
    st.just((MISSING, None)),
    st.just((None, None)),
    st.lists(st.sampled_from(_ALLOWED), max_size=4).map(lambda t: (t, None)),
    st.integers(500, 3000).map(lambda n: (["posts"] * n, None)),
    st.lists(st.sampled_from(_ALLOWED), max_size=2).map(lambda t: ([*t, "secret"], "forbidden_topic")),
    st.lists(texts.filter(lambda t: t not in SERVED), min_size=1, max_size=3).map(
        lambda t: (t, "forbidden_topic")
    ),
    st.tuples(texts.filter(lambda t: t not in SERVED), st.integers(500, 3000)).map(
        lambda p: ([p[0]] * p[1], "forbidden_topic")
    ),
    st.one_of(
        texts, big_ints, st.booleans(), st.floats(allow_nan=False), st.dictionaries(texts, texts, max_size=2)
    ).map(lambda v: (v, "bad_request")),
    st.lists(st.one_of(big_ints, st.none(), st.lists(texts, max_size=1)), min_size=1, max_size=3).map(
        lambda t: (["posts", *t], "bad_request")
    ),
)
auth_cursors = st.one_of(
    st.just((MISSING, None)),
    st.just((None, None)),
    st.integers(0, 50).map(lambda c: (c, None)),
    st.one_of(
        st.integers(max_value=-1),
        st.just(-(10**99) + 1),
        st.floats(allow_nan=False),
        st.just(3.0),
        texts,
        st.sampled_from(["7", "0x10"]),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(texts, st.integers(), max_size=1),
    ).map(lambda c: (c, "bad_request")),
)


@st.composite
def auth_payloads(draw: st.DrawFn) -> tuple[Any, str | None]:
    """An auth payload and the reason it must be refused with (``None``: accepted).

    The gateway checks the token, then the topics, then the cursor, and refuses
    with the reason of the first bad one.
    """
    if draw(st.integers(0, 9)) == 0:
        shape = draw(st.one_of(texts, big_ints, st.lists(json_values, max_size=3), st.booleans(), st.none()))
        return shape, "invalid_token"
    token_kind, token_value, token_reason = draw(auth_tokens)
    topics, topics_reason = draw(auth_topics)
    cursor, cursor_reason = draw(auth_cursors)
    if token_kind in _TOKENS:
        token: Any = _TOKENS[token_kind][0]()
    elif token_kind == "missing":
        token = MISSING
    else:
        token = token_value
    payload = _payload({"token": token, "topics": topics, "cursor": cursor})
    # Beyond max_frame_bytes the handshake never reaches the gateway: see test_an_oversize_auth_...
    assume(_encoded_size(payload) < MAX_FRAME - 1024)
    if _non_finite(payload):  # not JSON (RFC 8259): refused as a whole before any field is read
        return payload, "bad_request"
    return payload, token_reason or topics_reason or cursor_reason


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


def _encoded_size(value: Any) -> int:
    """Bytes of ``value`` in a python-socketio JSON packet (non-ASCII escaped)."""
    return len(json.dumps(value, separators=(",", ":")))


@examples(100)
@given(auth_payloads())
def test_garbage_auth_is_refused_with_the_reason(env: GatewayEnv, case: tuple[Any, str | None]) -> None:
    """Wrong types, forged/expired tokens, 3000-topic lists, Unicode topics, bad cursors: refused with why."""
    auth, reason = case

    async def attempt() -> None:
        before = await env.counts()
        client, refusal = await raw_client(env.gateway.url, auth)
        if reason is None:
            assert client is not None, f"a valid auth was refused: {refusal}"
            await close_client(client)
        else:
            assert client is None, f"connected with a bad auth (expected {reason})"
            assert isinstance(refusal, dict) and refusal.get("message") == reason, refusal
            detail = refusal.get("data")
            assert isinstance(detail, dict) and detail.get("reason") == reason, refusal
            assert isinstance(detail.get("message"), str) and detail["message"].strip()
        assert await env.counts() == before

    env.run(attempt())
    ran("gateway: garbage auth refused with a reason")


def test_an_oversize_auth_payload_gets_no_connection(env: GatewayEnv) -> None:
    """An auth payload beyond max_frame_bytes: refused with bad_request naming the limit; far beyond: cut."""
    auth = {"token": AUTH.issue("mallory"), "topics": ["posts"] * (MAX_FRAME // 8)}
    assert MAX_FRAME < _encoded_size(auth) < websocket_limit(MAX_FRAME)
    huge = {"token": AUTH.issue("mallory"), "topics": ["posts"] * (MAX_FRAME // 2)}
    assert _encoded_size(huge) > websocket_limit(MAX_FRAME)

    async def attempt() -> None:
        before = await env.counts()
        client, refusal = await raw_client(env.gateway.url, auth, wait_timeout=2)
        assert client is None and isinstance(refusal, dict), refusal
        assert refusal["data"]["reason"] == "bad_request"
        assert str(MAX_FRAME) in refusal["data"]["message"]
        client, refusal = await raw_client(env.gateway.url, huge, wait_timeout=2)
        assert client is None and refusal is None
        assert await env.counts() == before

    env.run(attempt())
    ran("gateway: oversize auth payload")


def test_garbage_auth_leaves_the_gateway_and_alice_unaffected(env: GatewayEnv) -> None:
    async def connections() -> None:
        await wait_for(
            lambda: len(env.gateway._clients) == 1 + len(env.attackers),
            what="refused clients gone",
            timeout=15.0,
        )

    env.run(connections())
    _settle(env)


# -- rxstore:mutate --------------------------------------------------------------------

_serial = itertools.count()
_REGISTERED = frozenset({"save_post", "delete_post"})


def _post_args(title: str, body: str, likes: int, private: bool, updated_at: float) -> dict[str, Any]:
    return {
        "id": f"m{next(_serial)}",
        "title": title,
        "body": body,
        "likes": likes,
        "private": private,
        "updated_at": updated_at,
    }


good_post_args = st.builds(
    _post_args,
    texts.filter(bool),
    texts,
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    # SQLite's printf, which captures REALs, can be one ulp off beyond about 1e±200 (documented in
    # rxstore.gateway.log.sqlite.schema._real_json): "exactly" holds for 0 and magnitudes within that.
    st.one_of(
        st.just(0.0),
        st.floats(min_value=1e-200, max_value=1e200),
        st.floats(min_value=-1e200, max_value=-1e-200),
    ),
)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[Any, frozenset[str], str | None]:
    """A ``rxstore:mutate`` payload, the answers it may get, and its id if it is valid."""
    if draw(st.integers(0, 7)) == 0:
        return draw(non_dicts), frozenset({"invalid_payload"}), None
    id_kind = draw(st.sampled_from(["valid"] * 5 + ["reuse", "missing", "not str", "empty", "too long"]))
    if id_kind in ("valid", "reuse"):
        mutation_id: Any = f"{draw(texts)[:100]}#{next(_serial)}"
    elif id_kind == "missing":
        mutation_id = MISSING
    elif id_kind == "not str":
        mutation_id = draw(not_str)
    elif id_kind == "empty":
        mutation_id = ""
    else:
        mutation_id = draw(st.text(min_size=129, max_size=400)) if draw(st.booleans()) else "📮" * 129
    name = draw(
        st.one_of(
            st.sampled_from(["save_post", "save_post", "delete_post", "SAVE_POST", "save_post "]),
            texts,
            st.just(MISSING),
            not_str,
        )
    )
    args = draw(
        st.one_of(
            good_post_args,
            st.builds(lambda i: {"id": i}, st.one_of(texts, big_ints)),
            json_values,
            st.just(MISSING),
        )
    )
    payload = _payload({"id": mutation_id, "name": name, "args": args})
    valid_id = isinstance(mutation_id, str) and 0 < len(mutation_id) <= 128
    if not valid_id or _non_finite(payload):  # not JSON (RFC 8259): refused as a whole
        return payload, frozenset({"invalid_payload"}), None
    if not (isinstance(name, str) and name in _REGISTERED):
        return payload, frozenset({"unknown_mutation"}), mutation_id
    return payload, frozenset({"ok", "invalid_payload", "forbidden", "rejected"}), mutation_id


def _same_mutation(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    """Same name and args as JSON says it (``True`` and ``1`` differ), as the gateway compares them."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


@examples(150)
@given(mutations(), st.booleans())
def test_garbage_mutations_get_error_acks_and_write_nothing(
    env: GatewayEnv, case: tuple[Any, frozenset[str], str | None], reuse: bool
) -> None:
    """Missing/long/non-string ids, unknown names, args of every type: an error ack and no row written.

    Accepted ones write at most one change and record their id once: a second
    use of the same id by the same user writes nothing; it is acknowledged as a
    duplicate (with the first result) when name and args are the same, refused
    with ``mutation_id_reused`` otherwise.
    """
    payload, answers, mutation_id = case

    async def attempt() -> None:
        sent = payload
        if reuse and isinstance(sent, dict) and mutation_id is not None and env.applied_mutations:
            sent = {**sent, "id": sorted(env.applied_mutations)[0][1]}
        sent_id = sent.get("id") if isinstance(sent, dict) else None
        key = ("mallory", sent_id) if isinstance(sent_id, str) else None
        first = env.applied_mutations.get(key) if key is not None else None
        before = await env.counts()
        ack = await env.call("mallory", MUTATE, sent)
        after = await env.counts()
        if first is not None and _same_mutation(first[0], (sent.get("name"), sent.get("args"))) is False:
            # A reused id: refused by the handler (bad args) or as reused, never run.
            assert ack.get("ok") is not True, f"{sent!r} reused an id and was accepted: {ack}"
            assert ack.get("error") in answers - {"ok"} | {"mutation_id_reused"}, ack
            assert after == before, "a reused mutation id wrote rows"
        elif isinstance(ack, dict) and ack.get("ok") is True:
            assert "ok" in answers, f"{sent!r} was accepted"
            assert ack.get("duplicate") is (first is not None), ack
            if first is not None:
                assert after == before, "a duplicate mutation wrote rows"
                assert ack.get("result") == first[1], "a retry got another result than the first run"
            else:
                assert after[1] == before[1] + 1 and before[0] <= after[0] <= before[0] + 1
                applied = ((sent.get("name"), sent.get("args")), ack.get("result"))
                env.applied_mutations[key] = applied  # type: ignore[index]  # None: a non-str id accepted
        else:
            _assert_error_ack(ack, answers - {"ok"})
            assert after == before, f"rejected mutation {sent!r} wrote rows"

    env.run(attempt())
    ran("gateway: garbage mutations")


@examples(60)
@given(good_post_args)
def test_well_formed_unicode_posts_reach_alice_exactly(env: GatewayEnv, args: dict[str, Any]) -> None:
    """Valid save_post with NUL, emoji, RTL, combining marks, extreme numbers: written, mirrored exactly."""

    async def attempt() -> None:
        before = await env.counts()
        ack = await env.call(
            "mallory", MUTATE, {"id": f"u{next(_serial)}", "name": "save_post", "args": args}
        )
        assert ack == {"ok": True, "result": {"id": args["id"]}, "duplicate": False}, ack
        assert await env.counts() == (before[0] + 1, before[1] + 1)
        expected = Post(**{**args, "author": "mallory"})
        await wait_for(
            lambda: env.posts.value.get(args["id"]) == expected,
            what=f"alice mirroring {args['id']}",
            timeout=15.0,
        )

    env.run(attempt())
    ran("gateway: well-formed unicode posts mirrored exactly")


@examples(40)
@given(texts, good_post_args)
def test_forged_mutation_ids_reused_across_users_stay_per_user(
    env: GatewayEnv, prefix: str, args: dict[str, Any]
) -> None:
    """Bob reusing mallory's mutation id is a new mutation of bob's; mallory reusing it for another
    mutation is refused (``mutation_id_reused``), and her retry of the first is a duplicate."""
    mutation_id = f"{prefix[:64]}~{next(_serial)}"

    async def attempt() -> None:
        first = await env.call("mallory", MUTATE, {"id": mutation_id, "name": "save_post", "args": args})
        assert first.get("ok") is True and first["duplicate"] is False, first
        before = await env.counts()
        bob_args = {**args, "id": f"b{next(_serial)}"}
        forged = await env.call("bob", MUTATE, {"id": mutation_id, "name": "save_post", "args": bob_args})
        assert forged.get("ok") is True and forged["duplicate"] is False, forged
        assert await env.counts() == (before[0] + 1, before[1] + 1)
        again = await env.call(
            "mallory", MUTATE, {"id": mutation_id, "name": "delete_post", "args": {"id": args["id"]}}
        )
        assert again.get("ok") is False and again["error"] == "mutation_id_reused", again
        retry = await env.call("mallory", MUTATE, {"id": mutation_id, "name": "save_post", "args": args})
        assert retry == {**first, "duplicate": True}, retry
        assert await env.counts() == (before[0] + 1, before[1] + 1), "a replayed id wrote rows"
        await wait_for(
            lambda: bob_args["id"] in env.posts.value and args["id"] in env.posts.value,
            what="both rows at alice",
            timeout=15.0,
        )
        assert (
            env.posts.value[bob_args["id"]].author == "bob"
            and env.posts.value[args["id"]].author == "mallory"
        )

    env.run(attempt())
    ran("gateway: forged mutation ids across users")


# -- rxstore:broadcast -------------------------------------------------------------------

_good_event = texts.filter(
    lambda e: (
        0 < len(e) <= 100
        and not e.startswith("rxstore:")
        and e not in CHANGE_EVENTS
        and e not in SOCKETIO_RESERVED
    )  # see test_gateway_bugs
)


@st.composite
def broadcasts(draw: st.DrawFn) -> tuple[Any, str | None]:
    """A ``rxstore:broadcast`` payload from mallory (subscribed to posts) and its error (``None``: ok)."""
    if draw(st.integers(0, 7)) == 0:
        return draw(non_dicts), "invalid_payload"
    topic = draw(
        st.one_of(
            st.just("posts"),
            st.just("posts"),
            st.sampled_from(["notes", "secret"]),  # served, not mallory's
            texts.filter(lambda t: t not in SERVED),
            not_str,
            st.just(MISSING),
        )
    )
    event = draw(
        st.one_of(
            _good_event,
            _good_event,
            st.sampled_from(sorted(CHANGE_EVENTS)),
            st.builds(lambda s: "rxstore:" + s, texts),
            st.sampled_from(["rxstore:batch", "rxstore:snapshot", "rxstore:reset", "rxstore:live"]),
            st.just(""),
            st.text(min_size=101, max_size=300),
            not_str,
            st.just(MISSING),
        )
    )
    data = draw(st.one_of(json_values, st.just(MISSING)))
    payload = _payload({"topic": topic, "event": event, "data": data})
    if _non_finite(payload):  # not JSON (RFC 8259): refused as a whole
        return payload, "invalid_payload"
    if topic != "posts":
        return payload, "forbidden_topic"
    if not isinstance(event, str) or not 0 < len(event) <= 100:
        return payload, "invalid_payload"
    if event.startswith("rxstore:") or event in CHANGE_EVENTS:
        return payload, "forbidden"
    return payload, None


@examples(150)
@given(broadcasts())
def test_garbage_broadcasts_are_refused_and_good_ones_reach_alice_once(
    env: GatewayEnv, case: tuple[Any, str | None]
) -> None:
    """Other users' or unknown topics, reserved names (post_update, rxstore:*), bad names: refused."""
    payload, error = case

    async def attempt() -> None:
        before = await env.counts()
        ack = await env.call("mallory", BROADCAST, payload)
        if error is None:
            assert ack == {"ok": True}, ack
            data = payload.get("data")
            env.expected_broadcasts.append(
                (payload["event"], {"from": "mallory", "topic": "posts", "data": data})
            )
        else:
            _assert_error_ack(ack, {error})
        assert await env.counts() == before

    env.run(attempt())
    ran("gateway: garbage broadcasts")


# -- unknown events ------------------------------------------------------------------------


@examples(100)
@given(
    st.one_of(texts, big_ints, st.none()).filter(
        lambda e: e not in SOCKETIO_RESERVED and e not in (MUTATE, BROADCAST)  # see test_gateway_bugs
    ),
    st.one_of(json_values, st.just(MISSING)),
)
def test_unknown_events_get_unknown_event(env: GatewayEnv, event: Any, data: Any) -> None:
    """Any other event name (Unicode, numbers, null, control-prefixed), any payload: ``unknown_event``."""

    async def attempt() -> None:
        before = await env.counts()
        client = await env.attacker("mallory")
        if data is MISSING:
            ack = await client.call(event, timeout=10)
        else:
            ack = await client.call(event, data, timeout=10)
        _assert_error_ack(ack, {"unknown_event"})
        assert await env.counts() == before

    env.run(attempt())
    ran("gateway: unknown events")


# -- oversize frames -------------------------------------------------------------------------


@examples(12)
@given(
    st.sampled_from(["unknown", MUTATE, BROADCAST]),
    st.sampled_from([-2048, 1, 4096, 4 * MAX_FRAME]),
    st.sampled_from(["x", "\x00", "📮", "שָׁלוֹם"]),
)
def test_oversize_frames_close_only_the_offender(env: GatewayEnv, kind: str, over: int, unit: str) -> None:
    """Beyond the websocket limit a frame closes that connection (no row, alice unaffected); beyond
    max_frame_bytes, up to that limit, it is answered invalid_payload; below, an ack."""

    async def attempt() -> None:
        before = await env.counts()
        client, refusal = await raw_client(
            env.gateway.url, {"token": AUTH.issue("mallory"), "topics": ["posts"]}
        )
        assert client is not None, refusal
        # As the client's json encodes it; rounded up, so that the blob alone is over by `over` when over > 0.
        blob = unit * -(-(MAX_FRAME + over) // (len(json.dumps(unit)) - 2))
        data: Any
        if kind == MUTATE:
            event, data = MUTATE, {"id": "big", "name": "save_post", "args": {"id": "big", "title": blob}}
        elif kind == BROADCAST:
            event, data = BROADCAST, {"topic": "posts", "event": "big", "data": blob}
        else:
            event, data = "unknown", blob
        try:
            if MAX_FRAME + over > websocket_limit(MAX_FRAME):
                await client.emit(event, data)
                await wait_for(lambda: not client.connected, what="the offender disconnected", timeout=10)
            elif over > 0:
                ack = await client.call(event, data, timeout=10)
                assert ack["error"] == "invalid_payload" and str(MAX_FRAME) in ack["message"], ack
                assert client.connected
            else:
                ack = await client.call(event, data, timeout=10)
                assert isinstance(ack, dict) and "ok" in ack, ack
                if ack["ok"] and kind == BROADCAST:
                    env.expected_broadcasts.append(
                        ("big", {"from": "mallory", "topic": "posts", "data": blob})
                    )
                if ack["ok"] and kind == MUTATE:
                    env.applied_mutations["mallory", "big"] = ((data["name"], data["args"]), ack["result"])
        finally:
            await close_client(client)
        if over > 0:
            assert await env.counts() == before

    env.run(attempt())
    ran("gateway: oversize frames")


def test_mutation_and_broadcast_properties_leave_alice_and_the_gateway_unaffected(env: GatewayEnv) -> None:
    _settle(env)


# -- floods ----------------------------------------------------------------------------------


def test_a_flood_of_2000_bad_events_and_50_bad_connects_changes_nothing(env: GatewayEnv, capsys: Any) -> None:
    """2,000 events from one client as fast as it can send them, 50 bad connects at once, 20 real writes.

    Every bad event gets its error ack, every connect its refusal, the 500
    good broadcasts in the flood reach alice once each, only the real writes
    reach the change log, and alice follows them.
    """

    async def flood() -> tuple[float, int]:
        client = await env.attacker("mallory")
        before = await env.counts()
        bad: list[tuple[str, Any, str]] = []
        for n in range(1500):
            kind = n % 3
            if kind == 0:
                bad.append((f"flood-{n}", {"n": n}, "unknown_event"))
            elif kind == 1:
                bad.append((MUTATE, {"id": f"f{n}", "name": "nope", "args": n}, "unknown_mutation"))
            else:
                bad.append((BROADCAST, {"topic": "secret", "event": "x", "data": n}, "forbidden_topic"))
        good = [(BROADCAST, {"topic": "posts", "event": "typing", "data": {"n": n}}, "") for n in range(500)]
        frames = [frame for pair in itertools.zip_longest(bad, good) for frame in pair if frame is not None]
        assert len(frames) == 2000

        async def writes() -> None:
            for n in range(20):
                await save_post(env.log, Post(id=f"flood-{n}", title=f"written during the flood {n}"))
                await asyncio.sleep(0.005)

        async def bad_connect(n: int) -> Any:
            auth = [{"token": "garbage"}, {"token": AUTH.issue("m"), "topics": ["secret"]}, {"token": 5}][
                n % 3
            ]
            connected, refusal = await raw_client(env.gateway.url, auth)
            assert connected is None
            return refusal

        started = time.monotonic()
        acks, refusals, _ = await asyncio.gather(
            asyncio.gather(*(client.call(name, data, timeout=60) for name, data, _ in frames)),
            asyncio.gather(*(bad_connect(n) for n in range(50))),
            writes(),
        )
        elapsed = time.monotonic() - started
        for (_name, _data, code), ack in zip(frames, acks, strict=True):
            if code:
                _assert_error_ack(ack, {code})
            else:
                assert ack == {"ok": True}, ack
        assert all(
            isinstance(r, dict) and r.get("message") in ("invalid_token", "forbidden_topic") for r in refusals
        )
        env.expected_broadcasts.extend(
            ("typing", {"from": "mallory", "topic": "posts", "data": {"n": n}}) for n in range(500)
        )
        after = await env.counts()
        assert after == (before[0] + 20, before[1]), "only the 20 real writes reach the log"
        return elapsed, len(frames)

    elapsed, count = env.run(flood(), timeout=120)
    _settle(env)
    with capsys.disabled():
        print(
            f"\n  flood: {count} events + 50 bad connects + 20 writes answered in {elapsed:.2f} s;"
            f" alice so far: {len(env.seen)} changes and {len(env.broadcasts)} broadcasts, each once,"
            f" {env.alice.metrics.reconnects} reconnects, {len(env.alice_errors)} errors"
        )
    ran("gateway: flood (2000 events + 50 bad connects)", count + 50)
