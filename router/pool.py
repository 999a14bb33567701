"""Per-dyno connection pools and the per-app backend view the request path works on.

Connections are pooled per dyno of one app (never shared across apps: an app must not see
another app's bytes even if two entries name one address). Idle connections are reused
last-in-first-out, so the warm ones stay warm and the cold ones age out at the front of the list,
where the periodic sweep closes them after `pool_idle_timeout`.

`Backends` binds an `AppRoute` (pure table data) to its runtime state: one `DynoPool` per dyno
and the app's `AppMetrics`. A new route entry for an app keeps the pools of dynos it still lists
(same name and address) and retires the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.accesslog import bare
from router.affinity import Roster, SigningKey
from router.backlog import Backlog
from router.challenges import answers_for
from router.config import RouterConfig
from router.metrics import AppMetrics, RouterMetrics
from router.poolsize import RecentPeak, surplus
from router.routes import AppRoute, DynoRoute

if TYPE_CHECKING:
    from router.exchange import Exchange
    from router.upstream import UpstreamConnection


class DynoPool:
    """One dyno of one app: its idle connections and its in-flight count (for P2C)."""

    __slots__ = ("app", "dyno", "host", "port", "log_name", "in_flight", "idle", "retired",
                 "max_idle", "peak", "recent")

    def __init__(self, app: str, dyno: DynoRoute, max_idle: int, window: int = 10) -> None:
        self.app = app
        self.dyno = dyno
        self.host = dyno.host
        self.port = dyno.port
        self.log_name = bare(dyno.name.encode())  # dyno= in log lines, formatted once
        self.in_flight = 0
        self.idle: list[UpstreamConnection] = []
        self.retired = False  # the dyno left the app's entry: close connections as they free
        self.max_idle = max_idle
        # The most requests in flight at once since the last housekeeping tick (the request
        # path raises it), and the peaks of the last ticks: what the idle pool should cover.
        self.peak = 0
        self.recent = RecentPeak(window)

    def take(self) -> UpstreamConnection | None:
        """The most recently used idle connection that is still open, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.transport.is_closing():
                return conn
        return None

    def give_back(self, conn: UpstreamConnection, now: float) -> None:
        if self.retired or len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """An idle connection the dyno closed."""
        try:
            self.idle.remove(conn)
        except ValueError:
            pass  # it was busy, or already taken: nothing pooled to forget

    def sweep(self, now: float, max_idle_seconds: float) -> int:
        """Once a housekeeping tick: close connections idle longer than `max_idle_seconds`,
        and those beyond what the recent peak concurrency needs (oldest first); -> how many."""
        needed = self.recent.tick(self.peak)
        self.peak = self.in_flight
        idle = self.idle  # oldest first
        closed = surplus(len(idle), self.in_flight, needed)  # the oldest ones beyond the need
        while closed < len(idle) and now - idle[closed].idle_since >= max_idle_seconds:
            closed += 1  # and those idle too long
        if closed:
            gone, self.idle = idle[:closed], idle[closed:]
            for conn in gone:
                conn.close()
        return closed

    def retire(self) -> None:
        self.retired = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    def __repr__(self) -> str:
        return (f"<DynoPool {self.app}/{self.dyno.name} {self.dyno.address} "
                f"in_flight={self.in_flight} idle={len(self.idle)}>")


class AppBackend:
    """An app's route entry bound to its pools and metrics; rebuilt when the entry changes."""

    __slots__ = ("route", "pools", "metrics", "waiters", "backlog", "request_timeout",
                 "max_body", "max_in_flight", "challenges", "affinity")

    def __init__(self, route: AppRoute, pools: tuple[DynoPool, ...], metrics: AppMetrics,
                 waiters: list[Exchange], backlog: Backlog[Exchange],
                 config: RouterConfig) -> None:
        self.route = route
        self.pools = pools
        self.metrics = metrics  # its `in_flight`: requests being answered, waiting ones too
        self.waiters = waiters  # exchanges queued while the app boots
        # Requests waiting for a place (backlog.py). Like `metrics` and `waiters`, one per app
        # for the router's life, kept when the entry changes.
        self.backlog = backlog
        # The app's own request timeout (routes format), else the router's (H12).
        self.request_timeout = route.request_timeout or config.request_timeout
        # The app's largest request body (routes format), else the router's; 0: no limit.
        self.max_body = route.max_body_bytes or config.max_body_bytes
        # Requests in flight, 200 per web dyno (Heroku's number); more wait in the backlog,
        # whose depth scales with the dynos too.
        dynos = max(1, len(pools))
        self.max_in_flight = config.max_in_flight_per_dyno * dynos
        backlog.max_depth = config.queue_per_dyno * dynos
        # ACME HTTP-01 answers by request target; None (nearly always) costs the request path
        # one test (router/challenges.py).
        self.challenges = answers_for(route)
        # The app's session affinity (affinity.py), None without the feature: then the
        # request path does nothing more than test this.
        self.affinity: Roster | None = None


class Backends:
    """app name -> AppBackend, rebound lazily when the table holds a new entry for the app."""

    __slots__ = ("bound", "_metrics", "_max_idle", "_config", "keys")

    def __init__(self, metrics: RouterMetrics, config: RouterConfig) -> None:
        # app name -> its backend; the request path reads it directly, see Exchange.dispatch
        self.bound: dict[str, AppBackend] = {}
        self._metrics = metrics
        self._max_idle = config.pool_max_idle
        self._config = config
        # The session affinity signing keys, newest first (the table's, see `sign_with`).
        self.keys: tuple[SigningKey, ...] = ()

    def get(self, route: AppRoute) -> AppBackend:
        backend = self.bound.get(route.name)
        if backend is not None and backend.route is route:
            return backend
        return self._bind(route, backend)

    def _bind(self, route: AppRoute, old: AppBackend | None) -> AppBackend:
        previous = {} if old is None else {pool.dyno: pool for pool in old.pools}
        window = self._config.pool_window
        pools = tuple(previous.pop(dyno, None) or DynoPool(route.name, dyno, self._max_idle,
                                                           window)
                      for dyno in route.dynos)
        for pool in previous.values():
            pool.retire()
        if old is not None:
            waiters, backlog = old.waiters, old.backlog
        else:
            waiters = []
            backlog = Backlog(self._config.queue_per_dyno, self._config.queue_timeout)
        backend = AppBackend(route, pools, self._metrics.app(route.name), waiters, backlog,
                             self._config)
        backend.affinity = self._roster(route, pools)
        self.bound[route.name] = backend
        return backend

    def _roster(self, route: AppRoute, pools: tuple[DynoPool, ...]) -> Roster | None:
        """Session affinity for an app that has the feature, while there are keys to sign
        with (without any, its requests are balanced as usual and get no cookie)."""
        if not route.session_affinity or not self.keys:
            return None
        return Roster(route.name, pools, self.keys)

    def sign_with(self, keys: tuple[SigningKey, ...]) -> None:
        """New signing keys (a rotation): every app with session affinity gets a roster
        under them now, not at its next request."""
        if keys == self.keys:
            return
        self.keys = keys
        for backend in self.bound.values():
            backend.affinity = self._roster(backend.route, backend.pools)

    def known(self) -> list[AppBackend]:
        return list(self.bound.values())

    def drop(self, name: str) -> AppBackend | None:
        """Forget an app that left the table; its pools are retired."""
        backend = self.bound.pop(name, None)
        if backend is not None:
            for pool in backend.pools:
                pool.retire()
        return backend

    def idle_connections(self) -> int:
        return sum(len(pool.idle) for backend in self.bound.values() for pool in backend.pools)
