"""parse_auth: what a CONNECT's auth payload asks for, or the first reason it is refused."""

from __future__ import annotations

from typing import Any

import pytest

from rxstore.gateway.access.auth import User
from rxstore.gateway.access.guard import BadPayload
from rxstore.gateway.sessions import ConnectRequest, Refusal, parse_auth
from tests.gateway.harness import AUTH

TOPICS = {"posts": None, "comments": None, "audit": None}
"""The served topics, in order (parse_auth only needs names)."""


def no_audit(user: User, topic: str) -> bool:
    return topic != "audit"


def parse(auth: Any, may_subscribe: Any = no_audit) -> ConnectRequest | Refusal:
    return parse_auth(auth, verify=AUTH.verify, topics=TOPICS, may_subscribe=may_subscribe)


def test_a_valid_payload_is_the_request_it_makes() -> None:
    token = AUTH.issue("alice")
    request = parse({"token": token, "topics": ["posts"], "cursor": 7, "epoch": "e1"})
    assert isinstance(request, ConnectRequest)
    assert request.user.id == "alice" and request.topics == frozenset({"posts"})
    assert (request.cursor, request.epoch) == (7, "e1")


def test_no_topics_means_every_served_topic_the_user_may_subscribe_to() -> None:
    request = parse({"token": AUTH.issue("alice")})
    assert isinstance(request, ConnectRequest)
    assert request == ConnectRequest(request.user, frozenset({"posts", "comments"}), None, None)


@pytest.mark.parametrize(
    ("auth", "reason", "message"),
    [
        (BadPayload("too big"), "bad_request", "auth payload refused: too big"),
        (None, "invalid_token", "send auth="),
        (["token"], "invalid_token", "send auth="),
        ({"token": "not-a-jwt"}, "invalid_token", ""),
        ({"topics": "posts"}, "bad_request", "'topics' must be a list"),
        ({"topics": ["posts", 1]}, "bad_request", "'topics' must be a list"),
        ({"topics": ["nope"]}, "forbidden_topic", "no such topic 'nope'"),
        ({"topics": ["audit"]}, "forbidden_topic", "'alice' may not subscribe to 'audit'"),
        ({"cursor": -1}, "bad_request", "'cursor' must be"),
        ({"cursor": True}, "bad_request", "'cursor' must be"),
        ({"cursor": 1.0}, "bad_request", "'cursor' must be"),
        ({"epoch": 3}, "bad_request", "'epoch' must be"),
    ],
)
def test_a_bad_payload_is_refused_with_its_reason(auth: Any, reason: str, message: str) -> None:
    if isinstance(auth, dict) and "token" not in auth:
        auth = {"token": AUTH.issue("alice"), **auth}
    refusal = parse(auth)
    assert isinstance(refusal, Refusal) and refusal.reason == reason
    assert message in refusal.message


def test_an_expired_token_is_refused_with_the_token_s_own_reason() -> None:
    refusal = parse({"token": AUTH.issue("alice", ttl=-60)})
    assert isinstance(refusal, Refusal) and refusal.reason == "token_expired"


def test_the_token_is_checked_before_the_topics() -> None:
    refusal = parse({"token": "not-a-jwt", "topics": ["nope"], "cursor": -1})
    assert isinstance(refusal, Refusal) and refusal.reason == "invalid_token"


def test_the_topics_are_checked_before_the_cursor_and_may_subscribe_is_asked_per_topic() -> None:
    asked: list[str] = []

    def record(user: User, topic: str) -> bool:
        asked.append(topic)
        return True

    refusal = parse({"token": AUTH.issue("alice"), "topics": ["comments", "nope"], "cursor": -1}, record)
    assert refusal == Refusal("forbidden_topic", "no such topic 'nope'")
    assert asked == ["comments"]
