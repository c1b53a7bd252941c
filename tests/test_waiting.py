"""tests/waiting.py: the shared wait_for returns once its condition holds and fails, naming it, when not."""

from __future__ import annotations

import asyncio

import pytest

from tests.waiting import wait_for


async def test_wait_for_returns_the_seconds_until_the_condition_held() -> None:
    loop = asyncio.get_running_loop()
    ready_at = loop.time() + 0.1
    waited = await wait_for(lambda: loop.time() >= ready_at, 5, "the clock")
    assert 0.09 <= waited < 2


async def test_wait_for_fails_after_its_timeout_naming_the_condition() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AssertionError, match=r"the impossible: not reached within 0\.1 s"):
        await wait_for(lambda: False, 0.1, "the impossible")
    assert loop.time() - started < 2


async def test_wait_for_awaits_an_async_predicate() -> None:
    calls: list[int] = []

    async def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await wait_for(third_time, 5, "the third call")
    assert len(calls) == 3


async def test_a_predicate_that_raises_ends_the_wait_with_its_error() -> None:
    def dead() -> bool:
        raise RuntimeError("the process exited")

    with pytest.raises(RuntimeError, match="exited"):
        await wait_for(dead, 5, "never")


async def test_wait_for_pauses_with_the_given_pause_between_checks() -> None:
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    checks = iter([False, False, True])
    await wait_for(lambda: next(checks), 5, "three checks", interval=0.25, pause=pause)
    assert pauses == [0.25, 0.25]
