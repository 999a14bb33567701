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


async def cancel_and_wait(*tasks: asyncio.Future) -> None:
    """Cancel each of `tasks` (unless it is done already) and return once all have finished.

    All are cancelled first, once each, so their clean-ups run side by side (a second
    cancellation would cut short a clean-up that shields a last write). A task's own
    cancellation is swallowed: it is what was asked for. An exception a task raised propagates
    to the caller once every task has ended (the first such one), and the caller decides
    whether it matters. If the caller itself is cancelled while waiting, CancelledError is
    raised here, even when a task swallowed its cancellation and returned normally.
    """
    current = asyncio.current_task()
    cancels_before = current.cancelling() if current is not None else 0

    def caller_cancelled() -> bool:
        return current is not None and current.cancelling() > cancels_before

    for task in tasks:
        task.cancel()  # does nothing to a task that is done
    failure: BaseException | None = None
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError as error:
            if caller_cancelled():
                raise  # the caller was cancelled as well: that one is not ours to swallow
            if not task.cancelled() and failure is None:
                failure = error  # it ended by awaiting something else that was cancelled
        except Exception as error:
            if failure is None:
                failure = error
    if caller_cancelled():
        raise asyncio.CancelledError()  # a task ignored the cancellation; the caller's stands
    if failure is not None:
        raise failure
