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
import sys
import time
from collections.abc import Iterable, Sequence

from router.accesslog import AccessLog, BufferedLogWriter, LogSink, StreamSink
from router.admin import start_admin
from router.balancer import P2CBalancer
from router.client import ClientConnection
from router.config import RouterConfig
from router.exchange import serve_backlog
from router.h2conn import H2Connection
from router.headers import RequestIds, RequestRewriter
from router.acceptor import Acceptor, bind
from router.listener import Listener
from router.metrics import RouterMetrics
from router.pool import Backends
from router.proxyproto import ProxyPreamble
from router.quarantine import Quarantine
from router.retry import RetryPolicy
from router.routes import AppState
from router.table import RouteTable
from router.timers import Sweep
from router.tls import AlpnRegistry, DefaultCertificate, TlsListener
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
        # HTTP/2 comes over TLS only (h2conn.py): its lines say so, and the version.
        self.h2_log = AccessLog(self.log_writer, b"https", b"2")
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
        self.tls_port: int | None = None  # bound HTTPS port, once started with --listen-tls
        self.admin_port: int | None = None
        self.plain: Listener | None = None  # the HTTP listener's scheme, port and log
        # ALPN protocol -> connection factory for the TLS listener (router/tls.py): other
        # protocols register here before start.
        self.alpn = AlpnRegistry()
        self.alpn.register("h2", H2Connection)  # HTTP/2, preferred; http/1.1 the fallback
        self.tls: TlsListener | None = None
        if config.listen_tls is not None:
            self.tls = TlsListener(self, DefaultCertificate(config.tls_default_cert,
                                                            config.tls_default_key),
                                   report=self._report)
        self.report = None  # callable(str) for status lines (the CLI's), else stderr-less
        self._servers: list[asyncio.Server] = []  # the TLS listener's
        self._acceptors: list[Acceptor] = []  # acceptor.py: the plain listener's sockets
        self._admin = None
        self._sweep = Sweep(self)

    # -- the routing table ------------------------------------------------------------------

    def install(self, table: RouteTable, changed: Iterable[str] | None = None) -> None:
        """Make `table` the one requests see, then reconcile pools and boot queues.

        `changed` names the apps whose entries differ (a feed delta knows them; after a delta
        `table` is the table already in use, changed in place); without it every app the
        router has served is checked.
        """
        previous, self.table = self.table, table
        self.backends.sign_with(table.affinity_keys)  # (nothing to do unless they changed)
        if self.tls is not None:  # the certificates follow the table (router/certs.py)
            if table is not previous or changed is None:
                self.tls.table_replaced(table.apps.values())
            else:
                self.tls.apps_changed((name, table.app(name)) for name in changed)
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
            "tls_hosts": ("Hosts with a certificate of their own on the TLS listener",
                          len(self.tls.index) if self.tls and self.tls.index else 0),
            "quarantined_dynos": ("Dynos skipped after a failed connect",
                                  self.quarantine.expire()),
            "dyno_connects_per_second": ("Connections opened to dynos per second (over the "
                                         "last housekeeping second)", self.connects_per_second),
        }

    # -- connections ------------------------------------------------------------------------

    def new_client(self) -> ClientConnection:
        return ClientConnection(self)

    def rewriter_for(self, peer: bytes) -> RequestRewriter:
        """The plain listener's forwarding rules for a connection from `peer`."""
        return self.plain.rewriter_for(peer)

    def _report(self, message: str) -> None:
        """A status line (a certificate that cannot be used): the CLI's, else stderr."""
        if self.report is not None:
            self.report(message)
        else:
            print(f"dynomesh router: {message}", file=sys.stderr, flush=True)

    def _new_connection(self):
        return ProxyPreamble(self) if self.config.proxy_protocol else ClientConnection(self)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        loop = self.loop = asyncio.get_running_loop()
        self.now = loop.time()
        sockets = bind(config.listen.host, config.listen.port, config.listen_backlog,
                       config.reuse_port)
        self._acceptors = [Acceptor(loop, sock, self._new_connection) for sock in sockets]
        self.port = sockets[0].getsockname()[1]
        self.plain = Listener(self, config.protocol, self.port, self.log)
        if self.tls is not None:
            # (The TLS listener accepts through the loop's server: one connection per turn.)
            context = self.tls.prepare()
            secure = await loop.create_server(
                self.tls.new_connection, config.listen_tls.host, config.listen_tls.port,
                ssl=context, ssl_handshake_timeout=config.header_timeout,
                backlog=config.listen_backlog, reuse_address=True,
                reuse_port=config.reuse_port or None, start_serving=False)
            self._servers.append(secure)
            self.tls_port = secure.sockets[0].getsockname()[1]
            self.tls.listener = Listener(self, "https", self.tls_port,
                                         AccessLog(self.log_writer, b"https"))
        if config.admin is not None:
            self._admin, self.admin_port = await start_admin(self, config.admin.host,
                                                             config.admin.port)
        for acceptor in self._acceptors:
            acceptor.start()
        for listening_server in self._servers:
            await listening_server.start_serving()
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
        acceptors, self._acceptors = self._acceptors, []
        for acceptor in acceptors:
            acceptor.close()
        for server in self._servers:
            server.close()

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
        if self._servers:
            for server in self._servers:
                await server.wait_closed()
            self._servers = []
        for backend in self.backends.known():
            for pool in backend.pools:
                pool.retire()
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        self.log_writer.flush()
