"""An app's backlog: requests waiting for one of its dynos to have room, first come first served.

Heroku answers H11 ("Backlog too deep") the moment an app has more requests in flight than its
web dynos may take. A dyno that keeps up is then refused work it would have finished in a few
milliseconds: 1000 clients against one healthy dyno see most requests fail. Here a request that
finds every dyno of its app at the in-flight limit waits in the app's backlog instead, and is
sent as soon as a request of the app ends. H11 is kept for a backlog that really is too deep:
more waiting requests than `max_depth`, or a request that waited longer than `max_wait`
(docs/router.md, "Backlog").

Pure bookkeeping, no I/O: the exchange decides what to do with what this returns. Entries
leave in order; an entry whose request ended while it waited (the client went away, its
deadline passed) is skipped when it reaches the front, so removal is O(1).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Backlog(Generic[T]):
    __slots__ = ("max_depth", "max_wait", "waiting", "_queue", "_gone", "waited_total",
                 "served")

    def __init__(self, max_depth: int, max_wait: float) -> None:
        if max_depth < 0:
            raise ValueError(f"a backlog's depth must not be negative, got {max_depth}")
        if max_wait <= 0:
            raise ValueError(f"a backlog's wait must be positive, got {max_wait}")
        self.max_depth = max_depth
        self.max_wait = max_wait
        self.waiting = 0  # requests waiting now (a plain int: the request path tests it)
        self._queue: deque[tuple[T, float]] = deque()
        self._gone: set[int] = set()  # ids of entries that left before their turn
        self.waited_total = 0.0  # seconds waited by requests served from the backlog
        self.served = 0

    def admit(self, item: T, now: float) -> bool:
        """Queue `item`; False (H11) when the backlog is already `max_depth` deep."""
        if self.waiting >= self.max_depth:
            return False
        self._queue.append((item, now))
        self.waiting += 1
        return True

    def leave(self, item: T) -> None:
        """`item`, admitted and not yet taken, no longer waits (its client left, or its wait
        ran out)."""
        self._gone.add(id(item))
        self.waiting -= 1

    def take(self, now: float) -> tuple[T, float] | None:
        """The request whose turn it is and how long it waited, or None if none waits."""
        queue, gone = self._queue, self._gone
        while queue:
            item, since = queue.popleft()
            if gone and id(item) in gone:
                gone.discard(id(item))
                continue
            self.waiting -= 1
            waited = now - since
            self.waited_total += waited
            self.served += 1
            return item, waited
        return None
