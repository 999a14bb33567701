"""Feed hubs: each control node reads every new revision of a feed once, for all its followers.

A hub waits on the store's revision signal (woken by this node's commits and, on PostgreSQL,
by other nodes' NOTIFY), reads the feed's changes since its own revision in one transaction,
and records which keys changed at that revision in a `ChangeRing`. Follower connections wait
on the hub and work out what to send from the ring: a follower at revision r needs the keys
changed after r. Several revisions that arrive together are read at once and reach followers
as one folded delta.

The route hub also keeps every app's current route entry and the routers' session affinity
signing keys (a router-wide item, changed under its own change-log key), so snapshots and
deltas for any number of routers cost no database reads, and it caches the bytes of the last
lines it built (routers at the same revision get the same line).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from dynomesh.backoff import BackoffPolicy
from controlplane.certs.keybox import CertificateKey, SealError
from controlplane.feeds.routes import route_entry
from controlplane.store import errors
from controlplane.store.affinity import KEYS_CHANGE, signing_keys
from controlplane.store.feeds import route_facts
from controlplane.store.database import Database, Transaction
from controlplane.store.models import SealedCertificate
from controlplane.store.revision import Feed

log = logging.getLogger(__name__)
# After a failed read (database away), the hub tries again after this long, doubling to 5 s.
RETRY = BackoffPolicy(0.1, 5.0)  # while the database is away


class HubClosed(Exception):
    """The node is shutting down: followers end their responses."""


def ndjson(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class ChangeRing:
    """Which keys changed at each recent revision, covering revisions after `floor`."""

    def __init__(self, floor: int = 0, limit: int = 10_000) -> None:
        self.floor = floor
        self._limit = limit
        self._events: deque[tuple[int, frozenset[str]]] = deque()

    def reset(self, floor: int) -> None:
        self.floor = floor
        self._events.clear()

    def add(self, revision: int, keys: frozenset[str]) -> None:
        self._events.append((revision, keys))
        while len(self._events) > self._limit:
            self.floor = self._events.popleft()[0]

    @property
    def last(self) -> int:
        """The revision of the newest change (the floor when none is kept)."""
        return self._events[-1][0] if self._events else self.floor

    def keys_after(self, revision: int) -> set[str] | None:
        """Keys changed after `revision`; None when the ring no longer reaches back that far."""
        if revision < self.floor:
            return None
        keys: set[str] = set()
        for changed_at, changed in reversed(self._events):
            if changed_at <= revision:
                break
            keys |= changed
        return keys


class FeedHub:
    """Follows one feed of the store for this node's followers."""

    feed: Feed

    def __init__(self, db: Database, *, history: int) -> None:
        self.db = db
        self.revision = 0  # everything of this feed up to here is in the ring (and caches)
        self.ring = ChangeRing(0, history)
        self._changed = asyncio.Condition()
        self._closed = False

    async def _read(self, tx: Transaction, keys: set[str] | None) -> Any:
        """Subclass hook: read what changed (`None`: everything); applied by `_apply`."""

    def _apply(self, data: Any, keys: set[str] | None) -> None:
        """Subclass hook: take in what `_read` returned. Runs without awaiting anything, so
        followers never see data and revision disagree."""

    async def start(self) -> None:
        async with self.db.read() as tx:
            revision = await tx.current_revision()
            data = await self._read(tx, None)
        self._apply(data, None)
        self.revision = revision
        self.ring.reset(revision)

    async def run(self) -> None:
        """Follow the revision signal until cancelled."""
        backoff = RETRY.start()
        while True:
            await self.db.signal.wait_beyond(self.revision)
            try:
                await self.advance()
                backoff.reset()
            except errors.StoreError as exc:
                delay = backoff.next_delay()
                log.warning("feeds: reading the %s feed failed: %s; retrying in %.1fs",
                            self.feed.value, exc, delay)
                await asyncio.sleep(delay)  # back-off while the database is away

    async def advance(self) -> None:
        async with self.db.read() as tx:
            try:
                changes = await tx.changes_since(self.feed, self.revision)
            except errors.HistoryExpired:
                # This hub fell further behind than the history: start over from everything.
                log.warning("feeds: %s hub lost its history; reloading", self.feed.value)
                revision = await tx.current_revision()
                data, keys = await self._read(tx, None), None
            else:
                revision = changes.revision
                keys = {c.key for c in changes.changes}
                data = await self._read(tx, keys) if keys else None
        async with self._changed:
            if keys is None:
                self._apply(data, None)
                self.ring.reset(revision)
            elif keys:
                self._apply(data, keys)
                self.ring.add(revision, frozenset(keys))
            self.revision = max(self.revision, revision)
            self._changed.notify_all()

    async def wait(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until `predicate()` holds (True) or `timeout` passes (False)."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: self._closed or predicate())
            except TimeoutError:
                return False
            if self._closed:
                raise HubClosed()
            return True

    async def close(self) -> None:
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def keys_since(self, since: int) -> set[str] | None:
        """Keys changed after `since` up to at least this hub's revision, from the ring or,
        when it does not reach back that far, the store's change log; None if both forgot."""
        keys = self.ring.keys_after(since)
        if keys is not None:
            return keys
        async with self.db.read() as tx:
            try:
                changes = await tx.changes_since(self.feed, since)
            except errors.HistoryExpired:
                return None
        await self.wait(lambda: self.revision >= changes.revision, None)
        more = self.ring.keys_after(changes.revision)
        if more is None:
            return None
        return {c.key for c in changes.changes} | more

    async def reach(self, revision: int) -> bool:
        """Wait until this hub is at `revision`; False if the store never got that far."""
        if revision <= self.revision:
            return True
        async with self.db.read() as tx:
            if revision > await tx.current_revision():
                return False
        await self.wait(lambda: self.revision >= revision, None)
        return True

    async def catch_up(self) -> None:
        """Wait until this hub has every revision committed before now (a new follower's
        first line then reflects every write that was acknowledged before it connected)."""
        async with self.db.read() as tx:
            current = await tx.current_revision()
        await self.wait(lambda: self.revision >= current, None)


class RouteHub(FeedHub):
    """The route feed: every app's current entry, kept in memory."""

    feed = Feed.ROUTES

    def __init__(self, db: Database, *, base_domain: str, history: int,
                 certificate_key: CertificateKey | None = None) -> None:
        super().__init__(db, history=history)
        self.base_domain = base_domain
        # Opens the certificates' private keys for the routers (the only place they are
        # opened); None: certificates are left out of the entries, said once each.
        self.certificate_key = certificate_key
        self._unopened: set[str] = set()
        self.entries: dict[str, dict[str, Any]] = {}
        # Router-wide: the session affinity signing keys, newest first, as routers get them.
        self.affinity_keys: list[dict[str, str]] = []
        self._snapshot: tuple[int, dict[bool, bytes]] | None = None
        self._deltas: dict[tuple[int, int, bool], bytes] = {}

    async def _read(self, tx: Transaction, keys: set[str] | None) -> Any:
        apps = None if keys is None else keys - {KEYS_CHANGE}
        facts = await route_facts(tx, apps, self.base_domain) if apps is None or apps else {}
        signing = None
        if keys is None or KEYS_CHANGE in keys:
            signing = [{"id": k.id, "secret": k.secret} for k in await signing_keys(tx)]
        return {name: route_entry(f, self._unseal) for name, f in facts.items()}, signing

    def _entry(self, name: str, withhold_keys: bool) -> dict[str, Any]:
        entry = self.entries[name]
        if not withhold_keys or "certificates" not in entry:
            return entry
        return {**entry, "certificates": [{"chain": c["chain"]} for c in entry["certificates"]]}

    def _signing_keys(self, withhold_keys: bool) -> list[dict[str, str]]:
        """The affinity signing keys; for a follower that is not a router, their ids only."""
        if not withhold_keys:
            return self.affinity_keys
        return [{"id": k["id"]} for k in self.affinity_keys]

    def _unseal(self, certificate: SealedCertificate) -> str | None:
        """The certificate's private key in PEM, or None (said once per certificate)."""
        key = self.certificate_key
        try:
            if key is None:
                raise SealError("the control plane has no certificate key "
                                "(--certificate-key-file)")
            return key.open(certificate.key_sealed, certificate.id.encode()).decode()
        except SealError as error:
            if certificate.id not in self._unopened:
                self._unopened.add(certificate.id)
                log.warning("route feed: certificate %s left out: %s", certificate.id, error)
            return None

    def _apply(self, data: Any, keys: set[str] | None) -> None:
        entries, signing = data
        if signing is not None:
            self.affinity_keys = signing
        if keys is None:
            self.entries = dict(entries)
        else:
            for key in keys - {KEYS_CHANGE}:
                if key in entries:
                    self.entries[key] = entries[key]
                else:
                    self.entries.pop(key, None)
        self._deltas.clear()

    def snapshot_line(self, withhold_keys: bool = False) -> tuple[bytes, int]:
        """The snapshot line; `withhold_keys` for followers that are not routers (a user
        token): certificates without their private keys, affinity signing keys as ids only
        (docs/feeds.md)."""
        if self._snapshot is None or self._snapshot[0] != self.revision:
            self._snapshot = (self.revision, {})
        lines = self._snapshot[1]
        if withhold_keys not in lines:
            apps = [self._entry(name, withhold_keys) for name in sorted(self.entries)]
            lines[withhold_keys] = ndjson(
                {"type": "snapshot", "revision": self.revision, "apps": apps,
                 "affinity_keys": self._signing_keys(withhold_keys)})
        return lines[withhold_keys], self.revision

    def delta_line(self, keys: set[str], since: int,
                   withhold_keys: bool = False) -> tuple[bytes, int]:
        """A delta bringing a follower at `since` (missing `keys`) to this hub's revision;
        with the signing keys when they changed meanwhile."""
        cache_key = (since, self.revision, withhold_keys)
        line = self._deltas.get(cache_key)
        if line is None:
            apps = keys - {KEYS_CHANGE}
            present = sorted(k for k in apps if k in self.entries)
            message = {"type": "delta", "revision": self.revision,
                       "apps": [self._entry(k, withhold_keys) for k in present],
                       "removed": sorted(k for k in apps if k not in self.entries)}
            if KEYS_CHANGE in keys:
                message["affinity_keys"] = self._signing_keys(withhold_keys)
            line = ndjson(message)
            if len(self._deltas) > 64:
                self._deltas.clear()
            self._deltas[cache_key] = line
        return line, self.revision


class AssignmentHub(FeedHub):
    """The assignment feed: which VMs' sets changed (each follower reads its own VM's set)."""

    feed = Feed.ASSIGNMENTS
