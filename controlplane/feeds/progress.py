"""How far the routers got: the revision each route-feed follower was last sent.

The scheduler stops a dyno taken out at revision D only once every router has been sent D
(docs/feeds.md, "Taking dynos out"). Each control node knows its own followers
(`RouteFollowers`); with a shared PostgreSQL database it also publishes the lowest revision its
followers were sent (`NodePresence` through `store.nodes`: the `control_nodes` table, a
NOTIFY), so the leader on another node can count them too (`fleet_delivered`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from controlplane.aio import wait_event
from controlplane.store import errors
from controlplane.store.models import NodeProgress
from controlplane.store.nodes import NodeStore

log = logging.getLogger(__name__)
# A control node refreshes its row this often; one silent for three beats is gone (its
# followers reconnect elsewhere and get a snapshot without the dyno anyway).
NODE_BEAT = 5.0
NODE_TIMEOUT = 3 * NODE_BEAT


class RouteFollowers:
    """This node's route-feed connections and the revision each was last sent."""

    def __init__(self) -> None:
        self._sent: dict[int, int] = {}
        self._next = 0
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()

    def join(self, revision: int) -> int:
        self._next += 1
        self._sent[self._next] = revision
        self._changed()
        return self._next

    def sent(self, follower: int, revision: int) -> None:
        if self._sent.get(follower, revision) < revision:
            self._sent[follower] = revision
            self._changed()

    def leave(self, follower: int) -> None:
        if self._sent.pop(follower, None) is not None:
            self._changed()

    @property
    def count(self) -> int:
        return len(self._sent)

    def delivered(self) -> int | None:
        """The lowest revision sent to every follower here; None when none follows."""
        return min(self._sent.values()) if self._sent else None


def fleet_delivered(local: int | None, others: Iterable[NodeProgress], *,
                    now: float) -> int | None:
    """The lowest revision sent to every route follower of every live node (None: nobody)."""
    values = [] if local is None else [local]
    values += [n.route_revision for n in others
               if n.route_followers > 0 and now - n.seen_at <= NODE_TIMEOUT]
    return min(values) if values else None


class NodePresence:
    """Keeps this node's row in `control_nodes` current (shared databases only)."""

    def __init__(self, nodes: NodeStore, node_id: str, followers: RouteFollowers,
                 revision: Callable[[], int], clock: Callable[[], float] = time.time) -> None:
        self._nodes = nodes
        self._node_id = node_id
        self._followers = followers
        self._revision = revision  # the route hub's revision: what an idle node has sent
        self._clock = clock
        self._started_at = clock()
        self._changed = asyncio.Event()
        followers.on_change(self._changed.set)

    async def run(self) -> None:
        while True:
            self._changed.clear()
            delivered = self._followers.delivered()
            node = NodeProgress(self._node_id, self._clock(), self._followers.count,
                                self._revision() if delivered is None else delivered)
            try:
                await self._nodes.publish(node, started_at=self._started_at)
            except errors.StoreError as exc:
                log.warning("control: could not publish this node's feed progress: %s", exc)
            await wait_event(self._changed, NODE_BEAT)  # a change, or the periodic refresh

    async def leave(self) -> None:
        try:
            await self._nodes.forget(self._node_id)
        except errors.StoreError as exc:
            log.warning("control: could not remove this node's row: %s (it expires in %ds)",
                        exc, NODE_TIMEOUT)
