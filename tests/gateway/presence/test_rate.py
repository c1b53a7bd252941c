"""TokenBucket: a connection's presence updates against a rate and a burst."""

from __future__ import annotations

from rxstore.gateway.presence.rate import TokenBucket


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, tokens=2.0, at=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)  # one token in half a second
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]  # never more than the burst
