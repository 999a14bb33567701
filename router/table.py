"""The routing table: an immutable snapshot mapping Host headers to app entries.

The router holds one `RouteTable` reference and swaps it whole, so a request sees either the old
table or the new one, never half an update. Deltas (`with_app`, `without_app`) build a new
table from the old one; they copy the two host dicts (a C-level copy, about a millisecond for
100 000 hosts) and touch only the changed app's hosts, so following a feed of per-app deltas
stays cheap.

Lookup is a dict lookup on the Host header as sent, then on its normalised form (lower case,
port and trailing dot removed), then a one-label wildcard (`*.example.com` matches
`a.example.com`, not `example.com` nor `a.b.example.com`); exact names beat wildcards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from router.routes import AppRoute, RoutesDocument, RoutesError

# A Host header's first label, when matched against a wildcard (RFC 1123 label, plus "_").
_LABEL = re.compile(rb"(?!-)[a-z0-9_-]{1,63}(?<!-)")


class DuplicateHostError(RoutesError):
    """Two apps claim one hostname; both are named so the operator can pick."""

    def __init__(self, path: str, host: str, first: str, second: str) -> None:
        super().__init__(path, f"host {host!r} is claimed by both app {first!r} and app {second!r}")
        self.host = host
        self.apps = (first, second)


def normalise_host(host: bytes) -> bytes:
    """`App1.Example.com.:8080` -> `app1.example.com` (RFC 9110 §4.2.3: case-insensitive)."""
    host = host.strip().lower()
    if host.startswith(b"["):  # IPv6 literal, maybe with a port
        end = host.find(b"]")
        return host[: end + 1] if end > 0 else host
    colon = host.rfind(b":")
    if colon >= 0 and (host[colon + 1:].isdigit() or colon == len(host) - 1):
        host = host[:colon]
    if host.endswith(b"."):
        host = host[:-1]
    return host


class RouteTable:
    """Host -> AppRoute. Never mutated after construction; build a new one instead."""

    __slots__ = ("_apps", "_exact", "_wildcard", "revision", "by_host")

    def __init__(self, apps: dict[str, AppRoute], exact: dict[bytes, AppRoute],
                 wildcard: dict[bytes, AppRoute], revision: int) -> None:
        # Use RouteTable.build / RouteTable.empty; this constructor trusts its arguments.
        self._apps = apps
        self._exact = self.by_host = exact  # by_host: read-only, for the request path
        self._wildcard = wildcard  # parent domain ("example.com") -> app of "*.example.com"
        self.revision = revision

    @classmethod
    def empty(cls) -> RouteTable:
        return cls({}, {}, {}, 0)

    @classmethod
    def build(cls, routes: Iterable[AppRoute], revision: int = 0) -> RouteTable:
        """A table from whole entries; refuses duplicate app names and hosts claimed twice."""
        table = cls.empty()
        apps: dict[str, AppRoute] = {}
        exact: dict[bytes, AppRoute] = {}
        wildcard: dict[bytes, AppRoute] = {}
        for index, route in enumerate(routes):
            if route.name in apps:
                raise RoutesError(f"apps[{index}].name", f"app {route.name!r} is listed twice")
            apps[route.name] = route
            _claim_hosts(route, exact, wildcard, f"apps[{index}]")
        table._apps, table._exact, table._wildcard, table.revision = apps, exact, wildcard, revision
        table.by_host = exact
        return table

    @classmethod
    def from_document(cls, document: RoutesDocument) -> RouteTable:
        return cls.build(document.apps, document.revision)

    # -- the request path -------------------------------------------------------------------

    def lookup(self, host: bytes) -> AppRoute | None:
        """The app serving this Host header value, or None (-> 404 "no such app")."""
        route = self._exact.get(host)
        if route is not None:
            return route
        name = normalise_host(host)
        route = self._exact.get(name)
        if route is not None:
            return route
        dot = name.find(b".")
        if dot > 0 and _LABEL.fullmatch(name, 0, dot):
            return self._wildcard.get(name[dot + 1:])
        return None

    # -- deltas -----------------------------------------------------------------------------

    def with_app(self, route: AppRoute, revision: int | None = None) -> RouteTable:
        """A new table where `route` replaces the entry of the same name (or is added)."""
        apps = dict(self._apps)
        exact = dict(self._exact)
        wildcard = dict(self._wildcard)
        old = apps.get(route.name)
        if old is not None:
            _release_hosts(old, exact, wildcard)
        apps[route.name] = route
        _claim_hosts(route, exact, wildcard, route.name)
        return RouteTable(apps, exact, wildcard, self.revision if revision is None else revision)

    def without_app(self, name: str, revision: int | None = None) -> RouteTable:
        """A new table without the app `name` (unchanged apart from the revision if absent)."""
        apps = dict(self._apps)
        old = apps.pop(name, None)
        exact, wildcard = self._exact, self._wildcard
        if old is not None:
            exact, wildcard = dict(exact), dict(wildcard)
            _release_hosts(old, exact, wildcard)
        return RouteTable(apps, exact, wildcard, self.revision if revision is None else revision)

    def with_changes(self, routes: Iterable[AppRoute], removed: Iterable[str],
                     revision: int) -> RouteTable:
        """A new table with several apps replaced, added or removed at once (one feed delta).

        The host dicts are copied once, not once per app. Every old entry's hosts are released
        before any new entry claims its own, so a host that moves from one app to another
        within one delta is not mistaken for a host claimed twice."""
        apps = dict(self._apps)
        exact = dict(self._exact)
        wildcard = dict(self._wildcard)
        for name in removed:
            old = apps.pop(name, None)
            if old is not None:
                _release_hosts(old, exact, wildcard)
        new: dict[str, AppRoute] = {}
        for index, route in enumerate(routes):
            if route.name in new:
                raise RoutesError(f"apps[{index}].name", f"app {route.name!r} is listed twice")
            new[route.name] = route
            old = apps.get(route.name)
            if old is not None:
                _release_hosts(old, exact, wildcard)
        for index, route in enumerate(new.values()):
            apps[route.name] = route
            _claim_hosts(route, exact, wildcard, f"apps[{index}]")
        return RouteTable(apps, exact, wildcard, revision)

    # -- inspection -------------------------------------------------------------------------

    @property
    def apps(self) -> Mapping[str, AppRoute]:
        return MappingProxyType(self._apps)

    def app(self, name: str) -> AppRoute | None:
        return self._apps.get(name)

    def __len__(self) -> int:
        return len(self._apps)

    def __repr__(self) -> str:
        return f"<RouteTable revision={self.revision} apps={len(self._apps)}>"


def _claim_hosts(route: AppRoute, exact: dict, wildcard: dict, where: str) -> None:
    for i, host in enumerate(route.hosts):
        if host.startswith("*."):
            key, target = host[2:].encode("ascii"), wildcard
        else:
            key, target = host.encode("ascii"), exact
        holder = target.get(key)
        if holder is not None and holder.name != route.name:
            raise DuplicateHostError(f"{where}.hosts[{i}]", host, holder.name, route.name)
        target[key] = route


def _release_hosts(route: AppRoute, exact: dict, wildcard: dict) -> None:
    for host in route.hosts:
        if host.startswith("*."):
            wildcard.pop(host[2:].encode("ascii"), None)
        else:
            exact.pop(host.encode("ascii"), None)
