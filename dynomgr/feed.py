"""The control plane's assignment feed as an `AssignmentSource` (docs/feeds.md).

The source keeps the full desired set of this VM: a snapshot replaces it, a delta replaces the
entries it carries (keyed by their dyno `id`) and drops the ids it lists as removed. After each
applied line the agent is handed the whole set, exactly as a re-read file would give it, and the
reconciler starts, stops and restarts what differs. Several deltas that arrive while the agent
is busy are handed over as one set.

Before every connection the VM registers (`ControlPlaneReporter.register`); once the feed
answers, the reporter sends the full observed state. While the feed is away nothing changes on
the VM: dynos keep running and crashed ones keep restarting; the follower reconnects with
back-off across the control URLs and resumes with `since`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable

from dynomesh.feedclient import FeedError, FeedLost, FeedRefused, FeedResync, FeedSettings, follow_feed
from dynomesh.logship import ShipSettings
from dynomesh.tasks import cancel_and_wait

from dynomgr.assignments import (Assignment, AssignmentSet, AssignmentsError, EntryError, Key,
                                 parse_entries)
from dynomgr.control import ControlError, ControlRefused
from dynomgr.controlreporter import ControlPlaneReporter, ReportSettings

FEED_PATH = "/feeds/assignments"


@dataclass(frozen=True)
class FollowConfig:
    """`dynomesh dynomgr --control URL[,URL] --token-file F`: what following needs."""

    urls: tuple[str, ...]
    token: str
    # Memory this VM offers to dynos, in MB (registered; the scheduler places by it).
    capacity_mb: int
    feed: FeedSettings = field(default_factory=FeedSettings)
    # Dyno output and platform lines shipped to the control plane's log stream (None: not).
    logs: ShipSettings | None = field(default_factory=ShipSettings)
    # Heartbeats and state reports (controlreporter.py); the interval must stay well under the
    # control plane's --agent-timeout (three beats per timeout by default).
    report: ReportSettings = field(default_factory=ReportSettings)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("--control: give at least one control plane URL")
        if self.capacity_mb < 1:
            raise ValueError(f"--capacity-mb must be at least 1, got {self.capacity_mb}")


class FeedAssignmentSource:
    def __init__(self, urls: tuple[str, ...], token: str, schemes: frozenset[str],
                 reporter: ControlPlaneReporter, log, settings: FeedSettings | None = None, *,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.urls = urls
        self._token = token
        self._schemes = schemes
        self._reporter = reporter
        self._log = log
        self._settings = settings or FeedSettings()
        self._rng = rng or random.Random()
        self._clock = clock
        # The desired set, and what the agent has not been handed yet.
        self._entries: dict[Key, Assignment] = {}
        self._errors: list[EntryError] = []
        self._changed = asyncio.Event()
        self._first: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # Following.
        self.revision: int | None = None
        self.following = False
        self.url: str | None = None
        self.reconnects = 0
        self.rejected = 0
        self.started_at = clock()
        self.last_message_at: float | None = None
        self._fresh = False
        self._resync = False
        self._lost_at: float | None = None
        self._last_complaint = float("-inf")

    # -- AssignmentSource ---------------------------------------------------------------------

    def describe(self) -> str:
        return f"assignment feed of {self.url or self.urls[0]}"

    def reload(self) -> None:
        """SIGHUP: nothing to re-read; the feed already says every change."""

    async def first(self) -> AssignmentSet:
        """Wait for the first snapshot (however long the control plane takes to answer).
        A token the control plane refuses before that is an `AssignmentsError`."""
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._task = loop.create_task(
            follow_feed(self.urls, FEED_PATH, self._token, self, self._settings, self._rng),
            name="assignment feed")
        try:
            await self._first
        except FeedRefused as error:
            await self.aclose()
            raise AssignmentsError(f"the control plane refused this agent's token ({error})") from None
        return self._take()

    async def next(self) -> AssignmentSet:
        await self._changed.wait()
        return self._take()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        self.following = False

    def _take(self) -> AssignmentSet:
        self._changed.clear()
        errors, self._errors = self._errors, []
        return AssignmentSet(MappingProxyType(dict(self._entries)), tuple(errors))

    # -- FeedHandler --------------------------------------------------------------------------

    def since(self) -> int | None:
        return None if self._resync else self.revision

    async def connecting(self, url: str) -> None:
        self.url = url
        try:
            await self._reporter.register()
        except ControlRefused as error:
            raise FeedRefused(error.status, f"registering this VM: {error}") from None
        except ControlError as error:
            raise FeedLost(f"cannot register this VM: {error}") from None

    def connected(self, url: str, reconnect: bool = False) -> None:
        self.reconnects += reconnect
        self._fresh = True

    async def line(self, data: bytes) -> None:
        self.last_message_at = self._clock()
        try:
            applied = self._apply(data)
        except FeedResync:
            self.rejected += 1
            self._resync = True
            raise
        self._fresh = False
        if not self.following:
            self._now_following()
        if applied:
            self._changed.set()
            if self._first is not None and not self._first.done():
                self._first.set_result(None)

    def disconnected(self, url: str, error: FeedError) -> None:
        now = self._clock()
        if isinstance(error, FeedRefused):
            self._refused_before_start(error)
        if self.following:
            self.following = False
            self._lost_at = now
            self._last_complaint = now
            self._log.error(f"lost the assignment feed of {url} ({error}); the {len(self._entries)} "
                            "assigned dynos keep running while reconnecting")
            return
        if now - self._last_complaint >= 60 or isinstance(error, FeedResync):
            self._last_complaint = now
            away = "" if self._lost_at is None else f" (away for {now - self._lost_at:.0f} s)"
            self._log.error(f"cannot follow the assignment feed of {url}: {error}; retrying{away}")

    def _refused_before_start(self, error: FeedRefused) -> None:
        # Before the first snapshot a refused token ends the agent (exit 2: fix the token);
        # afterwards it only stops updates, and the dynos keep running.
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)

    def _now_following(self) -> None:
        self.following = True
        if self._lost_at is not None:
            away = self._clock() - self._lost_at
            self._log.info(f"following the assignment feed of {self.url} again after {away:.1f} s")
            self._lost_at = None
        self._reporter.resync()

    # -- applying lines -----------------------------------------------------------------------

    def _apply(self, data: bytes) -> bool:
        """Apply one line; True when the desired set may have changed."""
        message = _decode(data)
        kind, revision = message["type"], message["revision"]
        need_snapshot = self._resync or self.revision is None
        if kind == "heartbeat":
            if not need_snapshot and revision > self.revision:
                self.revision = revision
            return False
        if kind not in ("snapshot", "delta"):
            return False  # a newer control plane's kind of line, not for this agent
        # Revisions only grow; a repeat is ignored. A snapshot that opens a connection is
        # taken even when its revision went back (a control plane on a restored store).
        if self.revision is not None and revision <= self.revision and not (self._fresh and kind == "snapshot"):
            return False
        entries = message.get("dynos", [])
        if not isinstance(entries, list):
            raise FeedResync(f"{kind} at revision {revision}: 'dynos' is not a list")
        parsed, errors = parse_entries(entries, self._schemes)
        if kind == "snapshot":
            desired = parsed
        else:
            if need_snapshot:
                raise FeedResync("a delta arrived where a snapshot was due")
            removed = message.get("removed", [])
            if not isinstance(removed, list) or not all(isinstance(r, str) for r in removed):
                raise FeedResync(f"delta at revision {revision}: 'removed' is not a list of dyno ids")
            desired = dict(self._entries)
            for dyno_id in removed:
                desired.pop(dyno_id, None)
            desired.update(parsed)
        # A bad entry keeps the dyno that runs under its key, as a bad line of a file does.
        for error in errors:
            if error.key is not None and error.key in self._entries and error.key not in parsed:
                desired[error.key] = self._entries[error.key]
        self._entries = desired
        self._errors.extend(errors)
        self.revision = revision
        self._resync = False
        return True

    # -- reporting ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For /healthz: whether the agent follows its feed and how far behind it may be."""
        since = self.last_message_at if self.last_message_at is not None else self.started_at
        return {
            "following": self.following,
            "url": self.url,
            "revision": self.revision,
            "last_message_seconds": round(max(0.0, self._clock() - since), 3),
            "reconnects": self.reconnects,
            "reporting": self._reporter.reachable,
            "vm": self._reporter.vm_id,
        }


def _decode(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise FeedResync(f"a feed line is not JSON ({error})") from None
    if not isinstance(message, dict):
        raise FeedResync("a feed line is not a JSON object")
    revision = message.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise FeedResync(f"a {message.get('type')!r} line has no valid revision")
    return message


class FollowCollector:
    """The follower's and the reporter's state as Prometheus metrics, read at scrape time."""

    def __init__(self, source: FeedAssignmentSource) -> None:
        self._source = source

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = self._source.status()
        yield GaugeMetricFamily("dynomgr_feed_following",
                                "1 while the assignment feed is connected and delivering",
                                value=1 if status["following"] else 0)
        yield GaugeMetricFamily("dynomgr_feed_revision", "Newest assignment feed revision applied",
                                value=status["revision"] or 0)
        yield GaugeMetricFamily("dynomgr_feed_last_message_seconds",
                                "Seconds since the last assignment feed message",
                                value=status["last_message_seconds"])
        yield CounterMetricFamily("dynomgr_feed_reconnects",
                                  "Assignment feed connections opened after the first",
                                  value=status["reconnects"])
        yield GaugeMetricFamily("dynomgr_control_plane_reachable",
                                "1 while reports reach the control plane",
                                value=1 if status["reporting"] else 0)
