"""The root's real connection loop in virtual time: backoff, ``max_attempts``, token refresh and a
gateway's ``retry_after``, as marble tests on a :class:`~rxstore.testing.VirtualLink`.

The first two tests are shown in docs/testing.md as they are here (the last test checks it).
"""

from __future__ import annotations

import inspect
from operator import attrgetter, itemgetter
from pathlib import Path

import attrs
import pytest
from reactivex import operators as ops

from rxstore import Backoff, ConnectError, ConnectionRefused, ConnectionState, RootStore, TableStore
from rxstore.protocol.errors import TokenProviderError
from rxstore.testing import VirtualLink, change_frame, marbles, snapshot_frame

DOCS = Path(__file__).parents[2] / "docs" / "testing.md"


@attrs.frozen
class Post:
    id: str
    title: str


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


def link_status(state: ConnectionState) -> str:
    return state.status.value


def test_retries_back_off_1_2_4_seconds_and_max_attempts_gives_up() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, jitter=0.0, max_attempts=4)
    with marbles() as m:
        root = m.root([PostStore()], link="u", backoff=backoff)  # unreachable from tick 0
        attempts = m.record(m.link.attempts.pipe(ops.map(lambda auth: "a")))
        delays = m.record(root.retries.pipe(ops.map(attrgetter("delay"))))
        links = m.record(root.connection.pipe(ops.map(link_status)))
        m.run()
    # Attempts at 0, 1, 3 and 7 s: 1, 2 and 4 s apart. The 4th failure in a row gives up.
    assert attempts == m.expected("aa-a---a")
    assert delays == m.expected("12-4", {"1": 1.0, "2": 2.0, "4": 4.0})
    assert links == m.expected(
        "(ior)------d", {"i": "idle", "o": "connecting", "r": "reconnecting", "d": "disconnected"}
    )


def test_the_token_provider_is_asked_again_after_token_expired() -> None:
    tokens = iter(["old", "new"])

    async def token() -> str:
        return next(tokens)

    with marbles() as m:
        root = m.root(
            [PostStore()],
            link="ec",  # refuses with token_expired at tick 0, accepts from tick 1
            values={"e": ConnectionRefused("token_expired")},
            token=token,
            backoff=Backoff(initial=1.0, jitter=0.0),
        )
        sent = m.record(m.link.attempts.pipe(ops.map(itemgetter("token"))))
        errors = m.record(root.errors.pipe(ops.map(str)))
        links = m.record(root.connection.pipe(ops.map(link_status)))
        m.run()
    assert sent == m.expected("on", {"o": "old", "n": "new"})
    assert errors == m.expected("e", {"e": "connection refused: token_expired"})
    assert links == m.expected(
        "(ior)c", {"i": "idle", "o": "connecting", "r": "reconnecting", "c": "connected"}
    )


def test_a_gateway_retry_after_is_waited_out_in_virtual_seconds() -> None:
    """Refused ``unavailable`` with ``retry_after=5``: the next attempt comes 5 s later, not after
    the backoff's 1 s."""
    busy = ConnectionRefused("unavailable", retry_after=5.0)
    with marbles() as m:
        root = m.root(
            [PostStore()], link="b--c", values={"b": busy}, backoff=Backoff(initial=1.0, jitter=0.0)
        )
        attempts = m.record(m.link.attempts.pipe(ops.map(lambda auth: "a")))
        delays = m.record(root.retries.pipe(ops.map(attrgetter("delay"))))
        m.run()
    assert attempts == m.expected("a----a")
    assert delays == m.expected("5", {"5": 5.0})
    assert root.connection_state.connected


def test_after_a_lost_link_the_root_retries_with_its_cursor_until_the_gateway_is_back() -> None:
    """Dropped at tick 2 and unreachable until 6: retries at 2, 3, 4, 5 fail, the one at 6 connects with
    the cursor, and the change missed meanwhile is replayed once."""
    frames = {
        "s": snapshot_frame("posts", 0, []),
        "1": change_frame("posts", 1, "INSERT", {"id": "p1", "title": "1"}),
        "2": change_frame("posts", 2, "INSERT", {"id": "p2", "title": "2"}),
    }
    backoff = Backoff(initial=1.0, factor=1.0, jitter=0.0)
    with marbles() as m:
        posts = PostStore()
        root = m.root([posts], server="s1--2", link="c-(xu)---c", values=frames, backoff=backoff)
        cursors = m.record(m.link.attempts.pipe(ops.map(itemgetter("cursor"))))
        m.run()
    # x drops the link at 2 and u fails the attempt the root makes at once, and those at 3, 4 and 5.
    assert cursors == m.expected("n-11111", {"n": None, "1": 1})
    assert sorted(posts.value) == ["p1", "p2"] and root.metrics.duplicates == 0


def test_a_provider_that_raises_counts_as_a_failed_attempt_and_max_attempts_ends_it() -> None:
    """The provider is called before each attempt; 2 raises with ``max_attempts=2`` give up, and the
    gateway never saw an attempt."""
    calls: list[float] = []

    async def token() -> str:
        calls.append(0)
        raise OSError("the auth server is down")

    with marbles() as m:
        root = m.root([PostStore()], token=token, backoff=Backoff(initial=2.0, jitter=0.0, max_attempts=2))
        attempts = m.record(m.link.attempts)
        errors = m.record(root.errors.pipe(ops.map(type)))
        m.run()
    assert len(calls) == 2 and attempts == []
    assert errors == m.expected("t-t", {"t": TokenProviderError})
    assert link_status(root.connection_state) == "disconnected" and not root.running


def test_an_attempt_waits_for_the_link_diagram_to_answer_it() -> None:
    """Before the first letter the gateway does not answer: the root stays connecting until tick 3."""
    with marbles() as m:
        root = m.root([PostStore()], link="---c")
        links = m.record(root.connection.pipe(ops.map(link_status)))
        m.run()
    assert links == m.expected("(io)--c", {"i": "idle", "o": "connecting", "c": "connected"})


def test_a_root_retrying_for_ever_runs_until_the_given_tick() -> None:
    """No ``max_attempts`` and a gateway that never comes: ``m.run(until=...)`` ends the clock."""
    with marbles() as m:
        root = m.root([PostStore()], link="u", backoff=Backoff(initial=1.0, factor=1.0, jitter=0.0))
        retries = m.record(root.retries)
        m.run(until=10)
        assert root.running
    assert [r.time for r in retries] == list(range(11))


def test_a_link_diagram_letter_mapped_to_neither_refusal_nor_failure_is_refused() -> None:
    with marbles() as m, pytest.raises(ValueError, match="unknown link symbol 'e'"):
        m.root([PostStore()], link="e", values={"e": change_frame("posts", 1, "INSERT", {"id": "p"})})


def test_m_link_before_any_root_says_to_build_one() -> None:
    with marbles() as m, pytest.raises(RuntimeError, match=r"m\.root"):
        _ = m.link


async def test_a_virtual_link_under_a_real_loop_accepts_refuses_or_holds_attempts() -> None:
    """Outside marbles: the root's loop on asyncio's own loop, the link answering as told."""
    link = VirtualLink()
    root = RootStore("virtual://gateway", transport=link, backoff=Backoff(initial=0.01, jitter=0.0))
    link.root = root
    link.refuse("forbidden_topic")
    with pytest.raises(ConnectionRefused, match="forbidden_topic"):
        await root.setup_realtime()
    link.accept()
    await root.setup_realtime()
    assert root.connection_state.connected and link.up
    await root.teardown_realtime()


def test_docs_testing_md_shows_the_backoff_and_token_tests_as_they_run() -> None:
    """The two tests docs/testing.md shows are these, word for word."""
    page = DOCS.read_text()
    for test in (
        test_retries_back_off_1_2_4_seconds_and_max_attempts_gives_up,
        test_the_token_provider_is_asked_again_after_token_expired,
    ):
        assert inspect.getsource(test) in page, f"docs/testing.md does not show {test.__name__} as it runs"


def test_a_waiting_setup_raises_connect_error_after_connect_timeout_virtual_seconds() -> None:
    """``m.call`` runs ``setup_realtime()`` on the virtual loop: a gateway unreachable for good makes it
    raise ``ConnectError`` at tick 10 (``connect_timeout=10``), no real second later."""
    link = VirtualLink()
    link.unreachable()
    root = RootStore(
        "virtual://gateway", transport=link, connect_timeout=10, backoff=Backoff(initial=1.0, jitter=0.0)
    )
    link.root = root
    with marbles() as m:
        outcome = m.call(0, root.setup_realtime)
        links = m.record(root.connection.pipe(ops.map(link_status)))
        m.run()
    [error] = outcome
    assert isinstance(error, ConnectError) and error.timeout == 10 and error.attempts == 5
    assert links[-1] == m.expected("----------d", {"d": "disconnected"})[0]
