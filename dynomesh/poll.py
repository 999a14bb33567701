"""Polling a condition that nothing announces, the one way every component does it.

Some waits have no event to await: a process leaving a cgroup, a pid going away, an endpoint
starting to answer. `poll_until` asks again and again until the answer is yes or a deadline
passes, with pauses that grow under `POLL` (10 ms, doubling to a quarter second): a quick
answer is seen at once, a slow one costs few checks.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Awaitable, Callable

from dynomesh.backoff import BackoffPolicy

# 10 ms first (most such waits end within a few), then doubling to 250 ms: a wait of seconds
# costs a dozen checks, and nothing is seen more than a quarter second late.
POLL = BackoffPolicy(0.01, 0.25)


async def poll_until(check: Callable[[], bool | Awaitable[bool]], timeout: float, *,
                     policy: BackoffPolicy = POLL,
                     clock: Callable[[], float] | None = None,
                     sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> bool:
    """Call `check` (plain or async) until it answers true -> True, or `timeout` seconds have
    passed -> False. It is called at once, and the last pause ends at the deadline, where it is
    asked once more. Exceptions from `check` propagate (it decides what is fatal)."""
    if clock is None:
        clock = asyncio.get_running_loop().time
    deadline = clock() + timeout
    backoff = policy.start()
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return True
        left = deadline - clock()
        if left <= 0:
            return False
        await sleep(min(backoff.next_delay(), left))
