"""The router's one timer: a periodic sweep over deadlines, like nginx's coarse timers.

No timer is created per request or per connection. Each client connection, tunnel and
PROXY-protocol preamble has a `deadline` (loop time) that the data path moves with a plain
attribute store, computed from the router's coarse clock `router.now`; every `tick` seconds the
sweep refreshes that clock, calls `expire(now)` on whatever is past its deadline, and, about
once a second, does the housekeeping: flushing log lines, closing pooled dyno connections idle
too long, and forgetting quarantines that ended.

Deadlines are therefore kept to within one tick (a quarter second by default, less when a
timeout is configured shorter; see `RouterConfig.tick`). The sweep's cost grows with the
number of open connections, not with the request rate.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.server import Router


class Sweep:
    __slots__ = ("router", "tick", "_handle", "_next_housekeeping")

    def __init__(self, router: Router) -> None:
        self.router = router
        self.tick = router.config.tick
        self._handle: asyncio.TimerHandle | None = None
        self._next_housekeeping = 0.0

    def start(self) -> None:
        loop = self.router.loop
        self.router.now = loop.time()
        self._next_housekeeping = self.router.now + self.router.config.log_flush_interval
        self._handle = loop.call_later(self.tick, self._run)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        router = self.router
        loop = router.loop
        now = router.now = loop.time()
        for group in (router.clients, router.tunnels, router.preambles):
            if group:
                for item in [item for item in group if item.deadline <= now]:
                    item.expire(now)
        if router.draining is not None:
            # Stopping: a connection with nothing in progress is closed at once.
            for client in [client for client in router.clients if client.idle()]:
                client.drain()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + router.config.log_flush_interval
            router.housekeeping(now)
        self._handle = loop.call_later(self.tick, self._run)
