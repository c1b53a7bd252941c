"""VirtualLoop: asyncio's futures, tasks, sleeps and timeouts on a TestScheduler's clock."""

from __future__ import annotations

import asyncio
import logging

import pytest
from reactivex.testing import TestScheduler

from rxstore.testing.virtual_loop import VirtualLoop


def virtual() -> tuple[TestScheduler, VirtualLoop]:
    scheduler = TestScheduler()
    return scheduler, VirtualLoop(scheduler)  # type: ignore[abstract]


def test_sleeps_take_virtual_seconds_and_tasks_interleave_by_time() -> None:
    scheduler, loop = virtual()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        woke.append((name, loop.time()))

    for name, seconds in [("slow", 30.0), ("fast", 0.5), ("now", 0)]:
        loop.create_task(sleeper(name, seconds))
    scheduler.start()
    assert woke == [("now", 0.0), ("fast", 0.5), ("slow", 30.0)]


def test_the_running_loop_inside_a_callback_is_the_virtual_one_and_none_after() -> None:
    """Pins the asyncio hooks VirtualLoop uses (``_get_running_loop`` / ``_set_running_loop``)."""
    scheduler, loop = virtual()
    seen: list[asyncio.AbstractEventLoop] = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    scheduler.start()
    assert seen == [loop]
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


async def test_inside_a_real_running_loop_the_real_one_is_restored_after_each_step() -> None:
    real = asyncio.get_running_loop()
    scheduler, loop = virtual()
    seen: list[asyncio.AbstractEventLoop] = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    scheduler.start()
    assert seen == [loop] and asyncio.get_running_loop() is real


def test_a_timeout_fires_in_virtual_time_and_a_cancelled_timer_never_runs() -> None:
    scheduler, loop = virtual()
    outcome: list[object] = []

    async def waits_too_long() -> None:
        try:
            async with asyncio.timeout(5):
                await asyncio.sleep(3600)
        except TimeoutError:
            outcome.append(("timed out", loop.time()))

    loop.create_task(waits_too_long())
    timer = loop.call_later(2, outcome.append, "cancelled timer ran")
    timer.cancel()
    scheduler.start()
    assert outcome == [("timed out", 5.0)]


def test_run_ready_runs_what_an_outside_action_set_off_at_once() -> None:
    """A future resolved by a scheduler action: the awaiting task continues within that action."""
    scheduler, loop = virtual()
    future = loop.create_future()
    steps: list[str] = []

    async def waiter() -> None:
        await future
        steps.append("resumed")

    loop.create_task(waiter())

    def resolve(_scheduler: object, _state: object) -> None:
        future.set_result(None)
        loop.run_ready()
        steps.append("after the action")

    scheduler.schedule_absolute(3, resolve)
    scheduler.start()
    assert steps == ["resumed", "after the action"]


def test_a_raising_callback_is_reported_to_the_exception_handler_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler, loop = virtual()
    ran: list[str] = []

    def boom() -> None:
        raise ValueError("bad callback")

    loop.call_soon(boom)
    loop.call_soon(ran.append, "next")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        scheduler.start()
    assert ran == ["next"]
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)
    handled: list[object] = []
    loop.set_exception_handler(lambda _loop, context: handled.append(context["exception"]))
    loop.call_soon(boom)
    scheduler.start()
    assert [str(e) for e in handled] == ["bad callback"]


def test_close_cancels_the_pending_tasks_and_refuses_new_work() -> None:
    scheduler, loop = virtual()

    async def forever() -> None:
        await loop.create_future()

    task = loop.create_task(forever())
    scheduler.start()
    loop.close()
    assert task.cancelled() and loop.is_closed()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
