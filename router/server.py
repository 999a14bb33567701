"""The router: its shared state, its listeners, and how a new routing table is installed.

`Router` is the one object every protocol instance holds: the current `RouteTable` (one
reference, swapped whole by `install`), the per-app `Backends`, the balancer, the access log and
the metrics. Nothing here is a module global, so several routers can run in one process (tests
do).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence

from router.accesslog import AccessLog, BufferedLogWriter, LogSink, StreamSink
from router.admin import start_admin
from router.balancer import P2CBalancer
from router.client import ClientConnection
from router.config import RouterConfig
from router.headers import RequestIds, RequestRewriter
from router.metrics import RouterMetrics
from router.pool import Backends
from router.routes import AppState
from router.table import RouteTable


class Router:
    def __init__(self, config: RouterConfig, *, sinks: Sequence[LogSink] | None = None,
                 rng: random.Random | None = None,
                 request_ids: RequestIds | None = None) -> None:
        self.config = config
        self.metrics = RouterMetrics()
        self.log_writer = BufferedLogWriter(sinks if sinks is not None else [StreamSink()])
        self.log = AccessLog(self.log_writer, config.protocol.encode("ascii"))
        self.backends = Backends(self.metrics, config)
        self.balancer = P2CBalancer(rng if rng is not None else random.Random())
        self.request_ids = request_ids if request_ids is not None else RequestIds()
        self.table: RouteTable | None = None  # None until a table is installed (not ready)
        self.feed = None  # router.feed.RouteFeed when following the control plane
        self.clients: set[ClientConnection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None  # bound HTTP port, once started
        self.admin_port: int | None = None
        self._server: asyncio.Server | None = None
        self._admin = None
        self._housekeeping: asyncio.TimerHandle | None = None

    # -- the routing table ------------------------------------------------------------------

    def install(self, table: RouteTable, changed: Iterable[str] | None = None) -> None:
        """Make `table` the one requests see, then reconcile pools and boot queues.

        `changed` names the apps whose entries differ (a feed delta knows them); without it
        every app the router has served is checked.
        """
        self.table = table
        names = changed if changed is not None else [b.route.name for b in self.backends.known()]
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
        }

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        loop = self.loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self._new_client, config.listen.host, config.listen.port, backlog=config.backlog,
            reuse_address=True, start_serving=False)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._rewriter = RequestRewriter(proto=config.protocol, port=self.port,
                                         request_ids=self.request_ids)
        if config.admin is not None:
            self._admin, self.admin_port = await start_admin(self, config.admin.host,
                                                             config.admin.port)
        await server.start_serving()
        self._housekeeping = loop.call_later(config.log_flush_interval, self._tick)

    def _new_client(self) -> ClientConnection:
        return ClientConnection(self, self._rewriter)

    def _tick(self) -> None:
        """Once a second: flush log lines, close dyno connections idle too long."""
        self.log_writer.flush()
        now = self.loop.time()
        limit = self.config.pool_idle_timeout
        for backend in self.backends.known():
            for pool in backend.pools:
                if pool.idle:
                    pool.sweep(now, limit)
        self._housekeeping = self.loop.call_later(self.config.log_flush_interval, self._tick)

    async def stop(self) -> None:
        """Stop listening, close connections and pools, flush the log."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            self._housekeeping = None
        if self._server is not None:
            self._server.close()
            for client in list(self.clients):
                client.transport.close()
            await self._server.wait_closed()
            self._server = None
        for backend in self.backends.known():
            for pool in backend.pools:
                pool.retire()
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        self.log_writer.flush()
