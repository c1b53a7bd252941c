"""rxstore.gateway.log.wakeup.WakeSignal: tailers are woken, and no wake-up is lost between read and wait."""

from __future__ import annotations

import asyncio

from rxstore.gateway.log.wakeup import WakeSignal

LONG = 5.0  # a wait that should not run out: the test fails on its own timeout first if it does


async def test_wait_returns_when_notified() -> None:
    signal = WakeSignal()
    waiter = asyncio.create_task(signal.wait(LONG))
    await asyncio.sleep(0)  # the waiter is waiting
    assert not waiter.done()
    signal.notify()
    await asyncio.wait_for(waiter, 1)


async def test_one_notify_wakes_every_waiter() -> None:
    signal = WakeSignal()
    waiters = [asyncio.create_task(signal.wait(LONG)) for _ in range(3)]
    await asyncio.sleep(0)
    signal.notify()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)


async def test_wait_without_notify_returns_after_its_timeout() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(WakeSignal().wait(0.05), 1)
    assert loop.time() - started >= 0.04


async def test_a_notify_between_mark_read_and_wait_is_not_lost() -> None:
    signal = WakeSignal()

    async def tailer() -> None:
        signal.mark_read()  # read everything up to now ...
        signal.notify()  # ... a write lands before the tailer waits ...
        await signal.wait(LONG)  # ... so the wait returns at once

    await asyncio.wait_for(tailer(), 1)


async def test_without_news_since_mark_read_the_wait_blocks() -> None:
    signal = WakeSignal()

    async def tailer() -> None:
        signal.mark_read()
        await signal.wait(LONG)

    task = asyncio.create_task(tailer())
    await asyncio.sleep(0.05)  # the point: nothing happened, so it must still be waiting
    assert not task.done()
    signal.notify()
    await asyncio.wait_for(task, 1)


async def test_a_missed_notify_is_remembered_once_per_task() -> None:
    signal = WakeSignal()

    async def tailer() -> bool:
        signal.mark_read()
        signal.notify()
        await signal.wait(LONG)  # returns at once: the notify above
        try:
            async with asyncio.timeout(0.05):  # in this task (wait_for could run it in another)
                await signal.wait(LONG)  # nothing new since: blocks
        except TimeoutError:
            return True
        return False

    assert await asyncio.wait_for(tailer(), 2)


async def test_another_tasks_mark_read_does_not_release_this_one() -> None:
    signal = WakeSignal()
    await asyncio.create_task(_mark_then_notify(signal))
    # This task never called mark_read: it waits for the next notify, not for the one above.
    task = asyncio.create_task(signal.wait(LONG))
    await asyncio.sleep(0.05)
    assert not task.done()
    signal.notify()
    await asyncio.wait_for(task, 1)


async def _mark_then_notify(signal: WakeSignal) -> None:
    signal.mark_read()
    signal.notify()


async def test_a_zero_timeout_returns_at_once() -> None:
    await asyncio.wait_for(WakeSignal().wait(0), 0.5)
