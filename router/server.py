"""The router: its shared state, its listeners, and how a new routing table is installed.

`Router` is the one object every protocol instance holds: the current `RouteTable` (one
reference: a snapshot's table is swapped in whole by `install`, a delta changes the table in
place in one synchronous step, router/table.py), the per-app `Backends`, the balancer, quarantine and
retry policies, the access log, the metrics, and the coarse clock the sweep keeps (timers.py).
Nothing here is a module global, so several routers can run in one process (tests do).

Stopping: `drain` stops accepting, lets the requests in flight finish (up to the drain
timeout), closes connections as they fall idle, then `stop` closes whatever is left.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Sequence

from router.accesslog import AccessLog, BufferedLogWriter, LogSink, StreamSink
from router.admin import start_admin
from router.balancer import P2CBalancer
from router.client import ClientConnection
from router.config import RouterConfig
from router.exchange import serve_backlog
from router.headers import RequestIds, RequestRewriter
from router.listener import Listener, bind
from router.metrics import RouterMetrics
from router.pool import Backends
from router.proxyproto import ProxyPreamble
from router.quarantine import Quarantine
from router.retry import RetryPolicy
from router.routes import AppState
from router.table import RouteTable
from router.timers import Sweep
from router.trust import TrustedProxies


class Router:
    def __init__(self, config: RouterConfig, *, sinks: Sequence[LogSink] | None = None,
                 rng: random.Random | None = None,
                 request_ids: RequestIds | None = None) -> None:
        self.config = config
        self.metrics = RouterMetrics()
        # Dyno connects per second, worked out by each housekeeping from the counter's growth.
        self.connects_per_second = 0.0
        self._connects_seen = (0.0, 0)
        self.log_writer = BufferedLogWriter(sinks if sinks is not None else [StreamSink()])
        self.log = AccessLog(self.log_writer, config.protocol.encode("ascii"))
        self.backends = Backends(self.metrics, config)
        self.balancer = P2CBalancer(rng if rng is not None else random.Random())
        self.quarantine = Quarantine(config.quarantine_time, time.monotonic)
        self.retry = RetryPolicy(config.connect_attempts)
        self.request_ids = request_ids if request_ids is not None else RequestIds()
        self.trusted = TrustedProxies(config.trusted_proxies) if config.trusted_proxies else None
        self.table: RouteTable | None = None  # None until a table is installed (not ready)
        self.feed = None  # router.feed.RouteFeed when following the control plane
        self.log_shipper = None  # logship.LogShipper when shipping lines to the control plane
        self.clients: set[ClientConnection] = set()
        self.tunnels: set = set()  # router.tunnel.Tunnel
        self.preambles: set[ProxyPreamble] = set()  # connections before their PROXY header
        # The coarse clock (loop time) deadlines are computed from; the sweep refreshes it.
        self.now = 0.0
        # Copied from the config for the request path (one attribute read instead of two).
        self.idle_timeout = config.idle_timeout
        self.header_timeout = config.header_timeout
        self.draining: asyncio.Event | None = None  # set once stopping, until all are done
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None  # bound HTTP port, once started
        self.admin_port: int | None = None
        self._listeners: list[Listener] = []  # listener.py: accepts every waiting connection
        self._admin = None
        self._sweep = Sweep(self)
        self._rewriter: RequestRewriter | None = None
        self._trusted_rewriter: RequestRewriter | None = None

    # -- the routing table ------------------------------------------------------------------

    def install(self, table: RouteTable, changed: Iterable[str] | None = None) -> None:
        """Make `table` the one requests see, then reconcile pools and boot queues.

        `changed` names the apps whose entries differ (a feed delta knows them; after a delta
        `table` is the table already in use, changed in place); without it every app the
        router has served is checked.
        """
        self.table = table
        self.reconcile(changed if changed is not None
                       else [b.route.name for b in self.backends.known()])

    def reconcile(self, names: Iterable[str]) -> None:
        """Bring these apps' backends in line with the installed table: pools rebound to the
        entry's dynos (or dropped with the app), requests queued for a booting app woken.
        (A request also rebinds its app's backend when it finds a new entry; this does it now,
        for apps no request is asking for.)"""
        table = self.table
        for name in names:
            route = table.app(name)
            if route is None:
                backend = self.backends.drop(name)
                waiters = backend.waiters if backend is not None else []
            else:
                backend = self.backends.get(route)  # rebinds pools now, not on a next request
                waiters = backend.waiters if route.state is not AppState.BOOTING else []
            if waiters:
                woken = list(waiters)
                waiters.clear()
                for exchange in woken:
                    exchange.booted(route)
            if backend is not None and backend.backlog.waiting:
                # More dynos may have room for requests in the backlog now; an app that left
                # the table sends them all on (to a 404).
                serve_backlog(backend, self.now, every=route is None)

    def gauges(self) -> dict[str, tuple[str, float]]:
        table = self.table
        return {
            "routes_apps": ("Apps in the loaded routing table", len(table) if table else 0),
            "routes_revision": ("Revision of the loaded routing table",
                                table.revision if table else 0),
            "routes_loaded": ("1 once a routing table is loaded", 1 if table else 0),
            "upstream_connections_idle": ("Pooled dyno connections waiting for a request",
                                          self.backends.idle_connections()),
            "client_connections": ("Open client connections", len(self.clients)),
            "tunnels": ("Open tunnels (upgraded connections, e.g. WebSocket)",
                        len(self.tunnels)),
            "quarantined_dynos": ("Dynos skipped after a failed connect",
                                  self.quarantine.expire()),
            "dyno_connects_per_second": ("Connections opened to dynos per second (over the "
                                         "last housekeeping second)", self.connects_per_second),
        }

    # -- connections ------------------------------------------------------------------------

    def new_client(self) -> ClientConnection:
        return ClientConnection(self)

    def rewriter_for(self, peer: bytes) -> RequestRewriter:
        """The forwarding rules for a connection from `peer` (a trusted balancer's or not)."""
        if self.trusted is not None and peer in self.trusted:
            return self._trusted_rewriter
        return self._rewriter

    def _new_connection(self):
        return ProxyPreamble(self) if self.config.proxy_protocol else ClientConnection(self)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        loop = self.loop = asyncio.get_running_loop()
        self.now = loop.time()
        sockets = bind(config.listen.host, config.listen.port, config.listen_backlog,
                       config.reuse_port)
        self._listeners = [Listener(loop, sock, self._new_connection) for sock in sockets]
        self.port = sockets[0].getsockname()[1]
        limits = config.limits
        self._rewriter = RequestRewriter(proto=config.protocol, port=self.port,
                                         request_ids=self.request_ids, max_name=limits.header_name)
        self._trusted_rewriter = RequestRewriter(
            proto=config.protocol, port=self.port, request_ids=self.request_ids,
            max_name=limits.header_name, trusted=True)
        if config.admin is not None:
            self._admin, self.admin_port = await start_admin(self, config.admin.host,
                                                             config.admin.port)
        for listener in self._listeners:
            listener.start()
        self._sweep.start()

    def housekeeping(self, now: float) -> None:
        """About once a second: close idle pooled connections and forget quarantines that
        ended (log lines are flushed on their own schedule, timers.py)."""
        limit = self.config.pool_idle_timeout
        since, connects = self._connects_seen
        if now > since:
            made = self.metrics.dyno_connects
            self.connects_per_second = round((made - connects) / (now - since), 1)
            self._connects_seen = (now, made)
        for backend in self.backends.known():
            for pool in backend.pools:
                pool.sweep(now, limit)  # also moves the pool's window of peak concurrency
        self.quarantine.expire()

    def _stop_listening(self) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop accepting; let requests in flight finish (up to `timeout`, default the drain
        timeout) while connections close as they fall idle. -> True if all finished."""
        self._stop_listening()
        self.draining = asyncio.Event()
        for preamble in list(self.preambles):
            preamble.transport.close()
        for client in list(self.clients):
            client.drain()
        self.check_drained()
        try:
            async with asyncio.timeout(self.config.drain_timeout if timeout is None else timeout):
                await self.draining.wait()
            return True
        except TimeoutError:
            return False

    def check_drained(self) -> None:
        """Called as connections end while draining."""
        if not self.clients and not self.tunnels:
            self.draining.set()

    async def stop(self) -> None:
        """Stop listening, close connections and pools, flush the log."""
        self._sweep.stop()
        self._stop_listening()
        for client in list(self.clients):
            client.transport.close()
        for tunnel in list(self.tunnels):
            tunnel.close()
        for preamble in list(self.preambles):
            preamble.transport.close()
        for backend in self.backends.known():
            for pool in backend.pools:
                pool.retire()
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        self.log_writer.flush()
