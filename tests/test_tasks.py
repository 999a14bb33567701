"""cancel_and_wait: the task's cancellation is swallowed, the caller's never is."""

from __future__ import annotations

import asyncio

import pytest

from dynomesh.tasks import cancel_and_wait

pytestmark = pytest.mark.unit


async def forever() -> None:
    await asyncio.Event().wait()


async def test_a_running_task_is_cancelled_and_awaited():
    cleaned = []

    async def worker():
        try:
            await forever()
        finally:
            cleaned.append(True)

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)  # let it start
    await cancel_and_wait(task)
    assert task.cancelled() and cleaned == [True]


async def test_a_task_that_never_started_is_cancelled_too():
    task = asyncio.create_task(forever())
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_the_callers_own_cancellation_propagates():
    inner = asyncio.create_task(forever())
    waiting = asyncio.Event()

    async def closer():
        waiting.set()
        await cancel_and_wait(inner)
        return "carried on"

    caller = asyncio.create_task(closer())
    await waiting.wait()  # the caller now waits for the inner task to end
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled() and inner.cancelled()


async def test_the_callers_cancellation_stands_when_the_task_swallows_its_own():
    started = asyncio.Event()

    async def stubborn():
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            return "ignored the cancellation"

    inner = asyncio.create_task(stubborn())
    await started.wait()

    async def closer():
        await cancel_and_wait(inner)
        return "carried on"

    caller = asyncio.create_task(closer())
    await asyncio.sleep(0)  # the caller has cancelled the inner task and waits for it
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert inner.result() == "ignored the cancellation"


async def test_a_caller_already_cancelling_still_gets_the_task_awaited():
    # Closing things from a `finally` of a cancelled task: its earlier cancellation is not
    # counted against the task being closed now.
    inner = asyncio.create_task(forever())
    outcome = []

    async def cancelled_then_closing():
        try:
            await forever()
        finally:
            await cancel_and_wait(inner)
            outcome.append(inner.cancelled())

    caller = asyncio.create_task(cancelled_then_closing())
    await asyncio.sleep(0)  # one loop turn: the caller waits in its try
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert outcome == [True]


async def test_a_task_already_done_is_left_as_it_is():
    task = asyncio.create_task(asyncio.sleep(0, result="done"))
    await task
    await cancel_and_wait(task)
    assert task.result() == "done"


async def test_an_exception_the_task_raised_reaches_the_caller():
    async def failing():
        raise RuntimeError("broken")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)  # it fails before the cancellation
    with pytest.raises(RuntimeError, match="broken"):
        await cancel_and_wait(task)


async def test_an_exception_raised_while_cancelling_reaches_the_caller():
    async def failing_cleanup():
        try:
            await forever()
        except asyncio.CancelledError:
            raise OSError("cleanup failed") from None

    task = asyncio.create_task(failing_cleanup())
    await asyncio.sleep(0)  # one loop turn: it waits in its try
    with pytest.raises(OSError, match="cleanup failed"):
        await cancel_and_wait(task)


async def test_several_tasks_are_cancelled_once_and_clean_up_side_by_side():
    # Each clean-up shields a last write that needs the other to have started: a second
    # cancellation, or waiting for one task before cancelling the next, would never finish it.
    in_cleanup = [asyncio.Event(), asyncio.Event()]

    async def worker(mine: asyncio.Event, other: asyncio.Event) -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            mine.set()
            await asyncio.shield(other.wait())
            raise

    first = asyncio.create_task(worker(in_cleanup[0], in_cleanup[1]))
    second = asyncio.create_task(worker(in_cleanup[1], in_cleanup[0]))
    await asyncio.sleep(0)  # both start
    async with asyncio.timeout(10):  # the bug this guards against is a hang
        await cancel_and_wait(first, second)
    assert first.cancelled() and second.cancelled()


async def test_with_several_tasks_a_failure_is_raised_once_all_have_ended():
    async def failing():
        try:
            await forever()
        except asyncio.CancelledError:
            raise OSError("cleanup failed") from None

    failed = asyncio.create_task(failing())
    quiet = asyncio.create_task(forever())
    await asyncio.sleep(0)  # one loop turn: both wait in their try
    with pytest.raises(OSError, match="cleanup failed"):
        await cancel_and_wait(failed, quiet)
    assert quiet.cancelled()
