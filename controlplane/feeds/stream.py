"""One follower's long-lived ndjson response: a snapshot or resume, then deltas and heartbeats.

The wire contract is docs/feeds.md. Each line is one JSON object written whole; a follower that
hangs up is noticed at the next write (a delta or, within the heartbeat interval, a heartbeat)
and forgotten, so it never holds back a take-out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from aiohttp import web

from controlplane.feeds.assignments import assignment_entries
from controlplane.feeds.hub import AssignmentHub, HubClosed, RouteHub, ndjson
from controlplane.feeds.progress import RouteFollowers
from controlplane.store import errors
from controlplane.store.feeds import assignments

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/x-ndjson"


class FeedResponse:
    """The streaming response and when it last carried a line (for heartbeats)."""

    def __init__(self, request: web.Request, heartbeat: float) -> None:
        self._request = request
        self.heartbeat = heartbeat
        self.response = web.StreamResponse(headers={
            "Content-Type": CONTENT_TYPE, "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})  # proxies such as nginx must not hold lines back
        self._last = 0.0

    async def open(self) -> None:
        await self.response.prepare(self._request)

    async def send(self, line: bytes) -> None:
        await self.response.write(line)
        self._last = time.monotonic()

    async def heartbeat_line(self, revision: int) -> None:
        await self.send(ndjson({"type": "heartbeat", "revision": revision}))

    def until_heartbeat(self) -> float:
        return max(0.0, self._last + self.heartbeat - time.monotonic())


async def serve_routes(feed: FeedResponse, hub: RouteHub, followers: RouteFollowers,
                       since: int | None, withhold_keys: bool = False) -> None:
    """A router's route feed until it hangs up or the node shuts down. `withhold_keys`: a
    follower that is not a router gets certificates without their private keys."""
    follower = followers.join(0 if since is None else since)
    try:
        await feed.open()
        revision = await _first_route_line(feed, hub, since, withhold_keys)
        followers.sent(follower, revision)
        while True:
            await hub.wait(lambda: hub.ring.last > revision, feed.until_heartbeat())
            keys = hub.ring.keys_after(revision)
            if keys is None:  # this follower fell behind what the ring keeps
                line, revision = hub.snapshot_line(withhold_keys)
                await feed.send(line)
            elif keys:
                line, revision = hub.delta_line(keys, revision, withhold_keys)
                await feed.send(line)
            elif feed.until_heartbeat() <= 0:
                revision = hub.revision
                await feed.heartbeat_line(revision)
            followers.sent(follower, revision)
    except (HubClosed, ConnectionResetError) as exc:
        log.debug("feeds: route follower %s ended: %s", follower, type(exc).__name__)
    finally:
        followers.leave(follower)


async def _first_route_line(feed: FeedResponse, hub: RouteHub, since: int | None,
                            withhold_keys: bool) -> int:
    await hub.catch_up()
    if since is not None and await hub.reach(since):
        keys = await hub.keys_since(since)
        if keys is not None:
            if keys:
                line, revision = hub.delta_line(keys, since, withhold_keys)
                await feed.send(line)
            else:  # up to date: say so at once
                revision = hub.revision
                await feed.heartbeat_line(revision)
            return revision
    line, revision = hub.snapshot_line(withhold_keys)  # a first follow, or history gone
    await feed.send(line)
    return revision


def _diff(sent: Mapping[str, dict], now: Mapping[str, dict]) -> tuple[list[dict], list[str]]:
    changed = [entry for dyno_id, entry in now.items() if sent.get(dyno_id) != entry]
    removed = sorted(dyno_id for dyno_id in sent if dyno_id not in now)
    return changed, removed


async def serve_assignments(feed: FeedResponse, hub: AssignmentHub, vm_id: str,
                            base_url: str, since: int | None) -> None:
    """A dyno manager's assignment feed until it hangs up or the node shuts down."""
    db = hub.db
    try:
        await feed.open()
        async with db.read() as tx:
            revision = await tx.current_revision()
            sent = assignment_entries(await assignments(tx, vm_id), base_url)
            resumable = since is not None and since <= revision
            if resumable:
                try:
                    changes = await tx.changes_since(hub.feed, since)
                    resumable = vm_id not in {c.key for c in changes.changes}
                except errors.HistoryExpired:
                    resumable = False
        if resumable:  # nothing changed for this VM: the client's set is the current one
            await feed.heartbeat_line(revision)
        else:
            # Resuming a VM whose set changed meanwhile also gets a snapshot: which of its
            # entries the client holds is unknown, and a snapshot restarts nothing unchanged.
            await feed.send(ndjson({"type": "snapshot", "revision": revision,
                                    "dynos": list(sent.values())}))
        while True:
            await hub.wait(lambda: hub.ring.last > revision, feed.until_heartbeat())
            keys = hub.ring.keys_after(revision)
            if keys is None or vm_id in keys:
                async with db.read() as tx:
                    revision = max(revision, await tx.current_revision())
                    now = assignment_entries(await assignments(tx, vm_id), base_url)
                changed, removed = _diff(sent, now)
                sent = now
                if changed or removed:
                    await feed.send(ndjson({"type": "delta", "revision": revision,
                                            "dynos": changed, "removed": removed}))
                    continue
            else:
                revision = max(revision, hub.revision)
            if feed.until_heartbeat() <= 0:
                revision = max(revision, hub.revision)
                await feed.heartbeat_line(revision)
    except (HubClosed, ConnectionResetError) as exc:
        log.debug("feeds: assignment follower of %s ended: %s", vm_id, type(exc).__name__)


def base_url(request: web.Request, public_url: str | None) -> str:
    """Where dyno managers fetch slugs: the configured public URL, else the URL they used."""
    return public_url.rstrip("/") if public_url else str(request.url.origin())


def as_since(raw: str | None) -> int | None:
    """The `since` query parameter: a revision >= 0, or None."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise ValueError(f"'since' must be a revision number (a whole number >= 0), got {raw!r}")
    return int(raw)
