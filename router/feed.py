"""Following the control plane's route feed into the router's table (docs/feeds.md).

`RouteFeed` is a table source like `RoutesFile`, but live: a snapshot is built into a new
table and swapped in with `Router.install(table)`, one reference; a delta replaces or removes
the apps it names in the live table, in place and in one synchronous step
(`RouteTable.apply_delta`: O(those apps)), then `Router.install(table, changed=...)` rebinds
their backends. It runs as one task on the router's loop and never on the request path: lines
are taken off the socket as they arrive, and a large line (a big snapshot) is decoded, parsed
and built in slices that yield to the loop (router/tableload.py), so requests keep being served
on the old table meanwhile and the new one appears whole; the table it replaced is then freed
in slices too.

Static stability: when the feed is away the router keeps routing on the last table it
installed; the follower reconnects with back-off across the control URLs and resumes with
`since`. `/readyz` and the `dynomesh_router_feed_*` metrics say whether it follows and how long
ago it last heard from the control plane.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from dynomesh.feedclient import FeedError, FeedRefused, FeedResync, FeedSettings, follow_feed
from dynomesh.tasks import cancel_and_wait
from router import tableload
from router.jsonstream import loads_stepwise, stepwise_events
from router.affinity import SigningKey
from router.routes import AppRoute, RoutesError, parse_affinity_keys, parse_app
from router.table import RouteTable, TableBuilder

if TYPE_CHECKING:
    from router.server import Router

FEED_PATH = "/feeds/routes"
# Lines longer than this are decoded, parsed and built in slices that yield to the loop:
# the table of a large snapshot takes from tens of milliseconds to seconds, which requests must
# not wait for. Below it (every delta of a few apps) the work takes well under a slice.
OFFLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class RouteFeedConfig:
    urls: tuple[str, ...]  # control plane base URLs, tried in turn
    token: str  # a `router` (or `user`) token
    settings: FeedSettings = field(default_factory=FeedSettings)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("--control: give at least one control plane URL")
        if not self.token:
            raise ValueError("--token-file: the token is empty")


@dataclass(frozen=True, slots=True)
class TableUpdate:
    """What one feed line asks of the router: a new table (snapshot), changes to the live
    one (delta), or only a revision (heartbeat)."""

    kind: str  # "snapshot", "delta" or "heartbeat"
    revision: int
    table: RouteTable | None = None  # a snapshot's new table
    changed: tuple[str, ...] | None = None  # apps a delta touches; None: check every app
    routes: tuple[AppRoute, ...] = ()  # a delta's new or replaced entries
    removed: tuple[str, ...] = ()  # a delta's removed apps
    # A delta's new session affinity signing keys; None: unchanged (docs/feeds.md)
    affinity_keys: tuple[SigningKey, ...] | None = None

    def apply_to(self, table: RouteTable) -> None:
        """A delta, applied to the live table in place (whole, or not at all)."""
        try:
            table.apply_delta(self.routes, self.removed, self.revision)
        except RoutesError as error:
            raise FeedResync(f"delta at revision {self.revision} refused: {error}") from error
        if self.affinity_keys is not None:
            table.affinity_keys = self.affinity_keys  # Router.install re-signs with them


def decode_line(data: bytes, current: RouteTable | None, applied: int | None, *,
                fresh: bool, need_snapshot: bool) -> TableUpdate | None:
    """One feed line -> the update it brings, or None when it brings nothing new.

    `applied` is the revision the router has; `fresh` says this is the first line of a new
    connection; `need_snapshot` that deltas cannot be applied until a snapshot came. Pure (no
    I/O, no shared state; a delta is returned, not applied). Raises `FeedResync` for a line
    the router cannot apply whole. `decode_large_line` does the same in slices."""
    try:
        message = json.loads(data) if len(data) <= OFFLOAD_BYTES else loads_stepwise(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise FeedResync(f"a feed line is not JSON ({error})") from error
    head = _head(message, applied, fresh)
    if not isinstance(head, tuple):
        return head
    kind, revision = head
    try:
        if kind == "snapshot":
            apps_raw = message.get("apps")
            if not isinstance(apps_raw, list):
                raise RoutesError("apps", "missing or not a list")
            keys = parse_affinity_keys(message.get("affinity_keys"))
            del message
            builder = TableBuilder(revision, current)
            for route in _parse_releasing(apps_raw):
                builder.add(route)
            table = builder.table()
            table.affinity_keys = keys
            return TableUpdate("snapshot", revision, table)
        apps_raw = message.get("apps", [])
        if not isinstance(apps_raw, list):
            raise RoutesError("apps", "not a list")
        routes = [parse_app(raw, f"apps[{i}]") for i, raw in enumerate(apps_raw)]
        return _delta(revision, routes, message, current, need_snapshot)
    except RoutesError as error:
        raise FeedResync(f"{kind} at revision {revision} refused: {error}") from error


async def decode_large_line(data: bytes, current: RouteTable | None, applied: int | None, *,
                            fresh: bool, need_snapshot: bool,
                            budget: float | None = None) -> TableUpdate | None:
    """`decode_line` for a large line, in slices of `budget` seconds that yield to the loop:
    the JSON is decoded and each entry parsed one at a time (the decoded entry is let go once
    parsed), then a snapshot's table is built entry by entry. Nothing is installed here."""
    message: dict = {}
    routes: list[AppRoute] = []
    refused: list[RoutesError] = []  # the first bad entry, raised once the line is known wanted

    def steps():
        nonlocal message
        for event, key, value in stepwise_events(data):
            if event == "item" and key == "apps":
                if not refused:
                    try:
                        routes.append(parse_app(value, f"apps[{len(routes)}]"))
                    except RoutesError as error:
                        refused.append(error)
            elif event == "list":
                message[key] = routes if key == "apps" else []
                if key == "apps":
                    routes.clear()
                    refused.clear()
            elif event == "item":
                message[key].append(value)
            elif event == "value":
                message[key] = value
            else:  # the whole line, not an object
                message = value
            yield

    # The entries parsed become the new table's: no full collection walks them meanwhile.
    with tableload.full_collections_paused():
        try:
            await tableload.run_in_slices(steps(), budget=budget)
        except ValueError as error:  # UnicodeDecodeError included
            raise FeedResync(f"a feed line is not JSON ({error})") from error
        head = _head(message, applied, fresh)
        if not isinstance(head, tuple):
            return head
        kind, revision = head
        try:
            if refused:
                raise refused[0]
            if kind == "snapshot":
                if message.get("apps") is not routes:
                    raise RoutesError("apps", "missing or not a list")
                keys = parse_affinity_keys(message.get("affinity_keys"))
                del message
                table = await tableload.build(routes, revision, current, budget=budget)
                table.affinity_keys = keys
                return TableUpdate("snapshot", revision, table)
            if "apps" in message and message["apps"] is not routes:
                raise RoutesError("apps", "not a list")
            return _delta(revision, routes, message, current, need_snapshot)
        except RoutesError as error:
            raise FeedResync(f"{kind} at revision {revision} refused: {error}") from error


def _head(message, applied: int | None, fresh: bool) -> tuple[str, int] | TableUpdate | None:
    """A decoded line's kind and revision when it must be applied; else what to return."""
    if not isinstance(message, dict):
        raise FeedResync("a feed line is not a JSON object")
    kind, revision = message.get("type"), message.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise FeedResync(f"a {kind!r} line has no valid revision")
    if kind == "heartbeat":
        return TableUpdate("heartbeat", revision)
    if kind not in ("snapshot", "delta"):
        # A newer control plane may send more kinds; they are not for this router.
        return None
    # docs/feeds.md: revisions only grow; a message at or below ours is a repeat. A snapshot
    # that opens a connection is taken even when its revision went back: the control plane
    # was restored or started on a new store, and its word is the only truth there is.
    if applied is not None and revision <= applied and not (fresh and kind == "snapshot"):
        return None
    return kind, revision


def _delta(revision: int, routes: list[AppRoute], message: dict, current: RouteTable | None,
           need_snapshot: bool) -> TableUpdate:
    if current is None or need_snapshot:
        raise FeedResync("a delta arrived where a snapshot was due")
    removed = message.get("removed", [])
    if not isinstance(removed, list) or not all(isinstance(n, str) for n in removed):
        raise RoutesError("removed", "not a list of app names")
    changed = tuple(dict.fromkeys([*removed, *(route.name for route in routes)]))
    keys = message.get("affinity_keys")
    return TableUpdate("delta", revision, None, changed, tuple(routes), tuple(removed),
                       None if keys is None else parse_affinity_keys(keys))


def _parse_releasing(apps_raw: list) -> list:
    """Parse entries, letting go of each raw entry once parsed: the decoded JSON of a large
    snapshot freed in one piece would hold the GIL for its whole deallocation."""
    routes = []
    for index in range(len(apps_raw)):
        routes.append(parse_app(apps_raw[index], f"apps[{index}]"))
        apps_raw[index] = None
    return routes


class RouteFeed:
    """Follows the route feed into `router` until stopped. Implements `FeedHandler`."""

    def __init__(self, router: Router, config: RouteFeedConfig, *,
                 say: Callable[[str], None] = lambda message: None,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.router = router
        self.config = config
        self._say = say
        self._rng = rng or random.Random()
        self._clock = clock
        self.revision: int | None = None  # the newest revision applied (heartbeats included)
        self.following = False  # a feed response is open and delivering
        self.url: str | None = None  # the control URL of the open (or last) connection
        self.reconnects = 0  # connections opened after the first
        self.rejected = 0  # lines refused (each makes the router take a fresh snapshot)
        self.started_at = clock()
        self.last_message_at: float | None = None
        self._fresh = False
        self._resync = False
        self._lost_at: float | None = None
        self._attempts_while_away = 0
        self._last_complaint = float("-inf")
        self._task: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            follow_feed(self.config.urls, FEED_PATH, self.config.token, self,
                        self.config.settings, self._rng), name="route feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        self.following = False

    # -- FeedHandler --------------------------------------------------------------------------

    def since(self) -> int | None:
        return None if self._resync else self.revision

    async def connecting(self, url: str) -> None:
        self.url = url

    def connected(self, url: str, reconnect: bool = False) -> None:
        self.reconnects += reconnect
        self._fresh = True

    async def line(self, data: bytes) -> None:
        self.last_message_at = self._clock()
        current = self.router.table
        args = (data, current, self.revision)
        flags = {"fresh": self._fresh, "need_snapshot": self._resync or self.revision is None}
        try:
            if len(data) > OFFLOAD_BYTES:
                update = await decode_large_line(*args, **flags)
            else:
                update = decode_line(*args, **flags)
            if update is not None and update.kind != "heartbeat":
                if self.router.table is not current:
                    # Only this follower installs tables in feed mode; anything else is a bug.
                    raise FeedResync("the routing table changed while a feed line was decoded")
                if update.kind == "delta":
                    update.apply_to(current)  # in place, whole or not at all; no await
        except FeedResync:
            self.rejected += 1
            self._resync = True  # the next connection asks for a snapshot
            raise
        self._fresh = False
        if not self.following:
            self._now_following()
        if update is None:
            return
        if update.kind == "heartbeat":
            if not flags["need_snapshot"] and update.revision > self.revision:
                self.revision = update.revision  # nothing changed up to here
            return
        if update.kind == "delta":
            self.router.install(current, changed=update.changed)
        else:
            self.router.install(update.table, changed=())  # the swap: one reference
            self._say(f"route feed: snapshot at revision {update.revision} "
                      f"({len(update.table)} apps) from {self.url}")
        self._resync = False
        self.revision = update.revision
        if update.kind == "snapshot":
            await tableload.reconcile(self.router)  # backends brought in line, in slices
            if current is not None:
                await tableload.retire(current)  # its objects freed in slices, not at once

    def disconnected(self, url: str, error: FeedError) -> None:
        now = self._clock()
        if self.following:
            self.following = False
            self._lost_at = now
            self._attempts_while_away = 0
            table = self.router.table
            keeping = (f"routing on the table of revision {table.revision} ({len(table)} apps)"
                       if table is not None else "no routing table yet")
            self._say(f"route feed: lost {url} ({error}); {keeping} while reconnecting")
            self._last_complaint = now
            return
        self._attempts_while_away += 1
        # While away, say so at first and then about once a minute, not at every attempt.
        if isinstance(error, (FeedRefused, FeedResync)) or now - self._last_complaint >= 60:
            self._last_complaint = now
            away = "" if self._lost_at is None else f" (away for {now - self._lost_at:.0f} s)"
            hint = (" — the token is not accepted: give a valid router token with --token-file"
                    if isinstance(error, FeedRefused) else "")
            self._say(f"route feed: cannot follow {url}: {error}{hint}; retrying{away}")

    def _now_following(self) -> None:
        self.following = True
        if self._lost_at is not None:
            away = self._clock() - self._lost_at
            self._say(f"route feed: following {self.url} again after {away:.1f} s "
                      f"({self._attempts_while_away} failed attempts)")
            self._lost_at = None

    # -- reporting ----------------------------------------------------------------------------

    def last_message_age(self) -> float:
        """Seconds since the last line (any kind), or since the follower started."""
        since = self.last_message_at if self.last_message_at is not None else self.started_at
        return max(0.0, self._clock() - since)

    def status(self) -> str:
        """One line for /readyz."""
        if self.following:
            return (f"following {self.url} at revision {self.revision}, last message "
                    f"{self.last_message_age():.1f} s ago")
        return (f"not following the route feed (last message {self.last_message_age():.1f} s "
                f"ago, {self.reconnects} reconnects)")

    def figures(self) -> FeedFigures:
        return FeedFigures(int(self.following), self.revision or 0, self.last_message_age(),
                           self.reconnects, self.rejected)


class FeedFigures(NamedTuple):
    """The follower's state at one moment: what /metrics shows (and /snapshot carries)."""

    following: int
    revision: int
    last_message_seconds: float
    reconnects: int
    rejected: int

    @classmethod
    def merge(cls, every: list[FeedFigures]) -> FeedFigures:
        """Workers of one node, each following the feed: the node follows when all do, is as
        far as its slowest worker, and counts every worker's reconnects and refusals."""
        return cls(min(f.following for f in every), min(f.revision for f in every),
                   max(f.last_message_seconds for f in every),
                   sum(f.reconnects for f in every), sum(f.rejected for f in every))


class FeedCollector:
    """The follower's state as Prometheus metrics, read at scrape time."""

    def __init__(self, figures: Callable[[], FeedFigures]) -> None:
        self._figures = figures

    def collect(self):
        figures = self._figures()
        yield GaugeMetricFamily("dynomesh_router_feed_following",
                                "1 while the route feed is connected and delivering",
                                value=figures.following)
        yield GaugeMetricFamily("dynomesh_router_feed_revision",
                                "Newest route feed revision applied (heartbeats included)",
                                value=figures.revision)
        yield GaugeMetricFamily("dynomesh_router_feed_last_message_seconds",
                                "Seconds since the last route feed message",
                                value=figures.last_message_seconds)
        yield CounterMetricFamily("dynomesh_router_feed_reconnects",
                                  "Route feed connections opened after the first",
                                  value=figures.reconnects)
        yield CounterMetricFamily("dynomesh_router_feed_rejected",
                                  "Route feed lines refused (each leads to a fresh snapshot)",
                                  value=figures.rejected)
