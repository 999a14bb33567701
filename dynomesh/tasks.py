"""Cancelling a task and waiting for it to end, the one way every component does it.

`task.cancel(); await task` inside `try/except CancelledError: pass` has a trap: the
CancelledError it swallows may be the *caller's* own (someone cancelled the task that is
closing things), and swallowing that one makes the caller carry on as if nobody had asked it to
stop. `cancel_and_wait` swallows only the CancelledError that ends the awaited task, and tells
the two apart by the caller's `cancelling()` count (Python 3.11+): a count that grew while it
waited means the caller was cancelled too, and then the caller gets its CancelledError.
"""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Future) -> None:
    """Cancel `task` (unless it is done already) and return once it has finished.

    The task's own cancellation is swallowed: it is what was asked for. An exception the task
    raised propagates to the caller, which decides whether it matters (log it, or let it
    through). If the caller itself is cancelled while waiting, CancelledError is raised here,
    even when the task swallowed its cancellation and returned normally.
    """
    current = asyncio.current_task()
    cancels_before = current.cancelling() if current is not None else 0
    task.cancel()  # does nothing to a task that is done
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > cancels_before:
            raise  # the caller was cancelled as well: that one is not ours to swallow
        if not task.cancelled():
            raise  # the task ended by awaiting something else that was cancelled: not ours
        return
    if current is not None and current.cancelling() > cancels_before:
        raise asyncio.CancelledError()  # the task ignored the cancellation; the caller's stands
