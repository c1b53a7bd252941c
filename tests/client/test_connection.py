"""rxstore.client.connection: the backoff policy and the connection / sync state values."""

from __future__ import annotations

import random
import time
import traceback

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxstore import SyncState, SyncStatus
from rxstore.client.connection import Backoff, ConnectionState, ConnectionStatus, Retry, behind
from rxstore.protocol.errors import TransportError


def test_backoff_without_jitter_grows_by_factor_from_initial_up_to_maximum() -> None:
    backoff = Backoff(initial=0.5, factor=3.0, maximum=10.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_backoff_attempt_zero_or_less_waits_the_initial_delay() -> None:
    backoff = Backoff(initial=0.5, jitter=0.0)
    assert backoff.delay(0) == backoff.delay(-3) == 0.5


@given(
    initial=st.floats(0.001, 5),
    factor=st.floats(1, 4),
    maximum=st.floats(0.001, 60),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 200),
    seed=st.integers(0, 2**32),
)
def test_jittered_delay_stays_within_its_share_of_the_capped_delay(
    initial: float, factor: float, maximum: float, jitter: float, attempt: int, seed: int
) -> None:
    backoff = Backoff(initial=initial, factor=factor, maximum=maximum, jitter=jitter)
    base = min(maximum, initial * factor ** (attempt - 1))
    delay = backoff.delay(attempt, random.Random(seed))
    assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9


def test_jitter_spreads_the_delays_and_a_seeded_rng_repeats_them() -> None:
    backoff = Backoff(initial=1.0, jitter=1.0)
    draws = [backoff.delay(1, random.Random(seed)) for seed in range(50)]
    assert len(set(draws)) > 40, "full jitter should not repeat itself"
    assert [backoff.delay(3, random.Random(7)) for _ in range(2)] == [backoff.delay(3, random.Random(7))] * 2


def test_max_attempts_gives_up_at_that_many_failures_and_none_never_does() -> None:
    assert [Backoff(max_attempts=3).gives_up(n) for n in (1, 2, 3, 4)] == [False, False, True, True]
    assert not Backoff().gives_up(10**9)


@pytest.mark.parametrize("bad", [0, -1])
def test_max_attempts_below_one_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        Backoff(max_attempts=bad)


def test_only_the_connected_status_is_connected() -> None:
    assert [ConnectionState(status).connected for status in ConnectionStatus] == [
        status is ConnectionStatus.CONNECTED for status in ConnectionStatus
    ]
    assert ConnectionState(ConnectionStatus.CONNECTED).connected


def test_connection_states_are_frozen_values_compared_by_every_field() -> None:
    state = ConnectionState(ConnectionStatus.RECONNECTING, reason="transport close", url="http://gw")
    assert state == ConnectionState(ConnectionStatus.RECONNECTING, "transport close", "http://gw")
    assert state != attrs.evolve(state, reason="server disconnect")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.reason = "x"  # type: ignore[misc]


def test_a_retry_is_a_frozen_value_of_attempt_delay_reason_and_url() -> None:
    retry = Retry(attempt=2, delay=0.5, reason="transport close", url="http://gw")
    assert retry == Retry(2, 0.5, "transport close", "http://gw") != attrs.evolve(retry, attempt=3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        retry.attempt = 3  # type: ignore[misc]


def test_the_pause_after_a_lost_link_is_random_up_to_the_first_delay_and_none_without_jitter() -> None:
    pauses = [Backoff(initial=1.0, jitter=0.5).pause(random.Random(seed)) for seed in range(50)]
    assert all(0.0 <= pause <= 1.0 for pause in pauses) and len(set(pauses)) > 40
    assert Backoff(initial=1.0, jitter=0.0).pause(random.Random(1)) == 0.0


def test_behind_keeps_the_cause_reachable_but_out_of_the_printed_traceback() -> None:
    """A ``__cause__`` is always printed; a suppressed ``__context__`` is not, and stays reachable."""
    cause = OSError("Connect call failed")
    error = behind(TransportError("cannot connect to http://gw"), cause)
    assert error.__context__ is cause and error.__cause__ is None
    printed = "".join(traceback.format_exception(error))
    assert "Connect call failed" not in printed and "cannot connect to http://gw" in printed


def test_a_stale_store_lags_by_the_time_since_it_went_stale() -> None:
    went_stale = time.time() - 30
    lag = SyncStatus(SyncState.STALE, cursor=5, since=went_stale).lag
    assert 30 <= lag < 40


def test_live_or_replaying_stores_and_a_stale_store_without_since_do_not_lag() -> None:
    long_ago = time.time() - 3600
    assert SyncStatus(SyncState.LIVE, since=long_ago).lag == 0.0
    assert SyncStatus(SyncState.REPLAYING, since=long_ago).lag == 0.0
    assert SyncStatus(SyncState.STALE).lag == 0.0


def test_a_stale_since_in_the_future_does_not_lag_negatively() -> None:
    assert SyncStatus(SyncState.STALE, since=time.time() + 60).lag == 0.0
