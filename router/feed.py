"""Following the control plane's route feed into the router's table (docs/feeds.md).

`RouteFeed` is a table source like `RoutesFile`, but live: a snapshot replaces the whole table,
a delta replaces or removes the apps it names (`RouteTable.with_changes`), and each result is
installed with `Router.install(table, changed=...)`, one reference swap. It runs as one task on
the router's loop and never on the request path: lines are taken off the socket as they
arrive, and a large line (a big snapshot) is decoded and built into a table on a worker thread,
so the loop keeps serving requests meanwhile and the new table appears whole.

Static stability: when the feed is away the router keeps routing on the last table it
installed; the follower reconnects with back-off across the control URLs and resumes with
`since`. `/readyz` and the `dynomesh_router_feed_*` metrics say whether it follows and how long
ago it last heard from the control plane.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from dynomesh.feedclient import FeedError, FeedRefused, FeedResync, FeedSettings, follow_feed
from dynomesh.tasks import cancel_and_wait
from router.routes import RoutesError, parse_app
from router.table import RouteTable

if TYPE_CHECKING:
    from router.server import Router

FEED_PATH = "/feeds/routes"
# Lines longer than this are decoded and built on a worker thread: decoding and building the
# table of a large snapshot takes from tens of milliseconds to seconds, which requests must not
# wait for. Below it (every delta of a few apps) a thread hop costs more than the work.
OFFLOAD_BYTES = 64 * 1024
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


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
    """What one feed line asks of the router: a table to install, or only a revision."""

    kind: str  # "snapshot", "delta" or "heartbeat"
    revision: int
    table: RouteTable | None = None  # None for a heartbeat
    changed: tuple[str, ...] | None = None  # apps a delta touched; None: check every app


def decode_line(data: bytes, current: RouteTable | None, applied: int | None, *,
                fresh: bool, need_snapshot: bool) -> TableUpdate | None:
    """One feed line -> the update it brings, or None when it brings nothing new.

    `applied` is the revision the router has; `fresh` says this is the first line of a new
    connection; `need_snapshot` that deltas cannot be applied until a snapshot came. Pure (no
    I/O, no shared state), so it can run on a worker thread. Raises `FeedResync` for a line
    the router cannot apply whole."""
    try:
        message = json.loads(data) if len(data) <= OFFLOAD_BYTES else loads_stepwise(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise FeedResync(f"a feed line is not JSON ({error})") from error
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
    try:
        if kind == "snapshot":
            apps_raw = message.get("apps")
            if not isinstance(apps_raw, list):
                raise RoutesError("apps", "missing or not a list")
            del message
            return TableUpdate("snapshot", revision,
                               RouteTable.build(_parse_releasing(apps_raw), revision))
        if current is None or need_snapshot:
            raise FeedResync("a delta arrived where a snapshot was due")
        apps_raw, removed = message.get("apps", []), message.get("removed", [])
        if not isinstance(apps_raw, list):
            raise RoutesError("apps", "not a list")
        if not isinstance(removed, list) or not all(isinstance(n, str) for n in removed):
            raise RoutesError("removed", "not a list of app names")
        routes = [parse_app(raw, f"apps[{i}]") for i, raw in enumerate(apps_raw)]
        table = current.with_changes(routes, removed, revision)
        changed = tuple(dict.fromkeys([*removed, *(route.name for route in routes)]))
        return TableUpdate("delta", revision, table, changed)
    except RoutesError as error:
        raise FeedResync(f"{kind} at revision {revision} refused: {error}") from error


def _parse_releasing(apps_raw: list) -> list:
    """Parse entries, letting go of each raw entry once parsed: the decoded JSON of a large
    snapshot freed in one piece would hold the GIL for its whole deallocation."""
    routes = []
    for index in range(len(apps_raw)):
        routes.append(parse_app(apps_raw[index], f"apps[{index}]"))
        apps_raw[index] = None
    return routes


def loads_stepwise(data: bytes):
    """`json.loads` for a large feed line, taking the arrays of the top-level object one
    element at a time. A single json.loads call holds the GIL from start to end (about 150 ms
    for a 10 000-app snapshot on a small VM), which would stall the router's loop even from a
    worker thread; element by element, the thread gives the GIL back between calls."""
    text = data.decode("utf-8")
    position = _skip(text, 0)
    if not text.startswith("{", position):
        return json.loads(text)  # not an object: let json say what is wrong with it
    message: dict = {}
    position = _skip(text, position + 1)
    while not text.startswith("}", position):
        key, position = _DECODER.raw_decode(text, position)
        position = _skip(text, position)
        if not isinstance(key, str) or not text.startswith(":", position):
            raise ValueError(f"expected a key and ':' at character {position}")
        position = _skip(text, position + 1)
        if text.startswith("[", position):
            items: list = []
            position = _skip(text, position + 1)
            while not text.startswith("]", position):
                item, position = _DECODER.raw_decode(text, position)
                items.append(item)
                position = _skip(text, position)
                if text.startswith(",", position):
                    position = _skip(text, position + 1)
                    if text.startswith("]", position):
                        raise ValueError(f"a ',' before ']' at character {position}")
                elif not text.startswith("]", position):
                    raise ValueError(f"expected ',' or ']' at character {position}")
            value, position = items, position + 1
        else:
            value, position = _DECODER.raw_decode(text, position)
        message[key] = value
        position = _skip(text, position)
        if text.startswith(",", position):
            position = _skip(text, position + 1)
            if text.startswith("}", position):
                raise ValueError(f"a ',' before '}}' at character {position}")
        elif not text.startswith("}", position):
            raise ValueError(f"expected ',' or '}}' at character {position}")
    if _skip(text, position + 1) != len(text):
        raise ValueError(f"extra data after the object at character {position + 1}")
    return message


def _skip(text: str, position: int) -> int:
    return _WHITESPACE.match(text, position).end()


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
                update = await asyncio.to_thread(decode_line, *args, **flags)
            else:
                update = decode_line(*args, **flags)
        except FeedResync:
            self.rejected += 1
            self._resync = True  # the next connection asks for a snapshot
            raise
        self._fresh = False
        if not self.following:
            self._now_following()
        if update is None:
            return
        if update.table is not None:
            if self.router.table is not current:
                # Only this follower installs tables in feed mode; anything else is a bug.
                raise FeedResync("the routing table changed while a feed line was decoded")
            self.router.install(update.table, changed=update.changed)
            if update.kind == "snapshot":
                self._say(f"route feed: snapshot at revision {update.revision} "
                          f"({len(update.table)} apps) from {self.url}")
            self._resync = False
            self.revision = update.revision
        elif not flags["need_snapshot"] and update.revision > self.revision:
            self.revision = update.revision  # a heartbeat: nothing changed up to here

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
