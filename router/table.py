"""The routing table: Host header -> app entry, for tables of up to a million host names.

Entries (`AppRoute`) are immutable; the table is one object that `Router.table` refers to.

- A **snapshot** (a whole table from a feed or a `--routes` file) is built into a new table by a
  `TableBuilder`, entry by entry, and swapped in with one reference. Building a million hosts
  takes seconds, so the router drives the builder in slices that yield to the loop
  (`router/tableload.py`); requests see the old table until the swap.
- A **delta** (`apply_delta`: some apps replaced, added or removed) changes the live table in
  place, touching only the hosts of the apps it names: O(that app), not O(table). The earlier
  design copied both host dicts per delta (70 ms at a million hosts) to keep every table
  immutable. In place is correct here because the router is one thread on one asyncio loop:
  `apply_delta` first checks the whole delta (a refused delta changes nothing), then releases
  and claims hosts without an await in between, so no request runs while the table is half
  updated; a request that already found its entry keeps that (immutable) entry. A sharded or
  persistent map would also give O(app) deltas, but it would cost the request path more than
  its one dict lookup.

The table is no longer a value: hold entries, not tables, across an await. A table replaced by a
snapshot is emptied afterwards (`tableload.retire`), which is how its million objects are freed
without one long pause.

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
    """Host -> AppRoute. Snapshots build a new table; deltas change this one in place."""

    __slots__ = ("_apps", "_exact", "_wildcard", "revision", "by_host", "affinity_keys")

    def __init__(self, apps: dict[str, AppRoute], exact: dict[bytes, AppRoute],
                 wildcard: dict[bytes, AppRoute], revision: int) -> None:
        # Use RouteTable.build / TableBuilder / RouteTable.empty; this trusts its arguments.
        self._apps = apps
        self._exact = self.by_host = exact  # by_host: read-only, for the request path
        self._wildcard = wildcard  # parent domain ("example.com") -> app of "*.example.com"
        self.revision = revision
        # Router-wide: the session affinity signing keys, newest first (router/affinity.py).
        # A snapshot or a file brings them with the table; a delta may replace them.
        self.affinity_keys: tuple = ()

    @classmethod
    def empty(cls) -> RouteTable:
        return cls({}, {}, {}, 0)

    @classmethod
    def build(cls, routes: Iterable[AppRoute], revision: int = 0) -> RouteTable:
        """A table from whole entries; refuses duplicate app names and hosts claimed twice."""
        builder = TableBuilder(revision)
        for route in routes:
            builder.add(route)
        return builder.table()

    @classmethod
    def from_document(cls, document: RoutesDocument) -> RouteTable:
        table = cls.build(document.apps, document.revision)
        table.affinity_keys = document.affinity_keys
        return table

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

    # -- deltas, in place -------------------------------------------------------------------

    def apply_delta(self, routes: Iterable[AppRoute], removed: Iterable[str] = (),
                    revision: int | None = None) -> tuple[str, ...]:
        """Replace or add `routes`, drop the apps named in `removed`, in place and whole.

        Costs O(hosts of the apps named). Everything is checked before anything changes, so a
        refused delta (an app listed twice, a host another app keeps) leaves the table as it
        was. Every replaced or removed app's hosts are released before any is claimed, so a
        host may move from one app to another within one delta. Returns the names touched
        (removed first), for `Router.install(changed=...)`."""
        removed = list(removed)
        new: dict[str, AppRoute] = {}
        for index, route in enumerate(routes):
            if route.name in new:
                raise RoutesError(f"apps[{index}].name", f"app {route.name!r} is listed twice")
            new[route.name] = route
        apps, exact, wildcard = self._apps, self._exact, self._wildcard
        leaving = set(removed).union(new)  # apps whose current hosts are given up
        claims: dict[tuple[bool, bytes], str] = {}  # (is a wildcard, key) -> app
        for index, route in enumerate(new.values()):
            for i, host in enumerate(route.hosts):
                claim = _key(host)
                other = claims.setdefault(claim, route.name)
                if other == route.name:
                    holder = (wildcard if claim[0] else exact).get(claim[1])
                    if holder is None or holder.name in leaving:
                        continue
                    other = holder.name
                raise DuplicateHostError(f"apps[{index}].hosts[{i}]", host, other, route.name)
        # Checked: from here on nothing can fail, and nothing awaits.
        for name in leaving:
            old = apps.pop(name, None)
            if old is not None:
                _release_hosts(old, exact, wildcard)
        for name, route in new.items():
            apps[name] = route
        for (is_wildcard, key), name in claims.items():
            (wildcard if is_wildcard else exact)[key] = new[name]
        if revision is not None:
            self.revision = revision
        return tuple(dict.fromkeys([*removed, *new]))

    def put(self, route: AppRoute, revision: int | None = None) -> None:
        """`route` replaces the entry of the same name (or is added), in place."""
        self.apply_delta([route], (), revision)

    def remove(self, name: str, revision: int | None = None) -> None:
        """Drop the app `name` and its hosts, in place (only the revision changes if absent)."""
        self.apply_delta((), [name], revision)

    # -- inspection -------------------------------------------------------------------------

    @property
    def apps(self) -> Mapping[str, AppRoute]:
        return MappingProxyType(self._apps)

    def app(self, name: str) -> AppRoute | None:
        return self._apps.get(name)

    @property
    def hosts(self) -> int:
        """Host names held (exact names and wildcards)."""
        return len(self._exact) + len(self._wildcard)

    def __len__(self) -> int:
        return len(self._apps)

    def __repr__(self) -> str:
        return f"<RouteTable revision={self.revision} apps={len(self._apps)}>"


class TableBuilder:
    """Builds a new table one entry at a time, so a caller can stop between entries (and let
    requests run) while a large snapshot is built; nothing of it is visible until `table()`.

    With `previous` (the table in use), an entry equal to the one it replaces is kept as the
    same object: the router's per-app backends stay bound to it, and the new entry is freed."""

    __slots__ = ("_apps", "_exact", "_wildcard", "_revision", "_previous", "_index")

    def __init__(self, revision: int, previous: RouteTable | None = None) -> None:
        self._apps: dict[str, AppRoute] = {}
        self._exact: dict[bytes, AppRoute] = {}
        self._wildcard: dict[bytes, AppRoute] = {}
        self._revision = revision
        self._previous = previous._apps if previous is not None else {}
        self._index = 0

    def add(self, route: AppRoute) -> None:
        """Claim `route`'s hosts; raises naming `apps[i]` (its place in the snapshot)."""
        index, self._index = self._index, self._index + 1
        apps = self._apps
        if route.name in apps:
            raise RoutesError(f"apps[{index}].name", f"app {route.name!r} is listed twice")
        old = self._previous.get(route.name)
        if old is not None and old == route:
            route = old
        exact, wildcard = self._exact, self._wildcard
        for i, host in enumerate(route.hosts):
            is_wildcard, key = _key(host)
            target = wildcard if is_wildcard else exact
            holder = target.setdefault(key, route)
            if holder is not route:
                raise DuplicateHostError(f"apps[{index}].hosts[{i}]", host, holder.name,
                                         route.name)
        apps[route.name] = route

    @property
    def exact_hosts(self) -> int:
        return len(self._exact)

    def table(self) -> RouteTable:
        return RouteTable(self._apps, self._exact, self._wildcard, self._revision)


def _key(host: str) -> tuple[bool, bytes]:
    """An entry's host -> (is it a wildcard, the dict key): `*.example.com` -> example.com."""
    if host.startswith("*."):
        return True, host[2:].encode("ascii")
    return False, host.encode("ascii")


def _release_hosts(route: AppRoute, exact: dict, wildcard: dict) -> None:
    for host in route.hosts:
        is_wildcard, key = _key(host)
        target = wildcard if is_wildcard else exact
        if target.get(key) is route:
            del target[key]
