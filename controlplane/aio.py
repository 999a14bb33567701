"""Small asyncio helpers shared by the control plane's long-running tasks."""

from __future__ import annotations

import asyncio

from dynomesh.tasks import cancel_and_wait


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for `event` at most `timeout` seconds (None: no limit); True if it was set."""
    return await wait_any((event,), timeout)


async def wait_any(events, timeout: float | None) -> bool:
    """Wait until one of `events` is set, at most `timeout` seconds; True if one was."""
    if any(event.is_set() for event in events):
        return True
    if timeout is not None and timeout <= 0:
        return False
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


async def lead_while_leading(leading: asyncio.Event, lead, *, signal, wake: asyncio.Event,
                             name: str) -> None:
    """The shape of a loop only the scheduling leader runs (the pool, the certificates): wait
    to lead, run `lead()` (which returns once `leading` is cleared), and again, until
    cancelled; meanwhile `wake` is set each time the store's revision moves (`signal`)."""
    async def watch() -> None:
        seen = signal.revision
        while True:
            seen = await signal.wait_beyond(seen)
            wake.set()

    watcher = asyncio.create_task(watch(), name=name)
    try:
        while True:
            await leading.wait()
            await lead()
    finally:
        await cancel_and_wait(watcher)
