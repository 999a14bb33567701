"""One request's journey: route state checks, dyno choice, connection, relay, log line.

An `Exchange` is created by the client connection when a request head is parsed and lives
until the response is relayed (or the router answers itself). It owns the per-request facts
(request id, timings, status, bytes) and the decisions between the two connections; the two
`Protocol`s only move bytes into and out of it.

Its phases and their transitions are the table in `phases.py`.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from router import errors
from router.errors import RouterError
from router.flow import AWAITING_DYNO, PEER_BUFFER_FULL
from router.headers import NONE, Framing
from router.phases import ALLOWED_MASK, CONNECTING, DONE, FORWARDING, QUEUED, RESPONDING, Phase
from router.routes import AppRoute, AppState
from router.upstream import UpstreamConnection

if TYPE_CHECKING:
    from router.client import ClientConnection
    from router.pool import AppBackend, DynoPool
    from router.server import Router


# RFC 9110 §9.2.2: only these may be sent again after a pooled connection died under them.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

_RUNNING = AppState.RUNNING
_STATE_ERRORS = {
    AppState.BLANK: errors.BLANK_APP,
    AppState.SCALED_TO_ZERO: errors.NO_WEB_DYNOS,
    AppState.CRASHED: errors.APP_CRASHED,
}


class Exchange:
    __slots__ = (
        # fixed at creation
        "client", "router", "method", "target", "head", "host", "request_id", "fwd",
        "framing", "is_head", "http11", "start", "wall",
        # routing
        "route", "backend", "pool", "tried", "failure", "retried", "timer",
        # progress
        "phase", "upstream", "pending", "request_complete", "keep_alive", "reused",
        "connect_ms", "sent_at", "status", "nbytes",
    )

    def __init__(self, client: ClientConnection, router: Router, method: bytes, target: bytes,
                 head: bytes, host: bytes | None, request_id: bytes, fwd: bytes,
                 framing: Framing, keep_alive: bool, http11: bool, start: float,
                 wall: float) -> None:
        self.client = client
        self.router = router
        self.method = method
        self.target = target
        self.head = head
        self.host = host
        self.request_id = request_id
        self.fwd = fwd
        self.framing = framing
        self.is_head = method == b"HEAD"
        self.keep_alive = keep_alive
        self.http11 = http11
        self.start = start  # loop time when the head was parsed
        self.wall = wall  # the same moment in Unix time
        self.route: AppRoute | None = None
        self.backend: AppBackend | None = None
        self.pool: DynoPool | None = None
        self.tried: list[DynoPool] | None = None
        self.failure: RouterError | None = None
        self.retried = False
        self.timer: asyncio.TimerHandle | None = None
        self.phase = QUEUED
        self.upstream: UpstreamConnection | None = None
        self.pending: list[bytes] = [head]  # request bytes not yet written to the dyno
        self.request_complete = framing is NONE
        self.reused = False
        self.connect_ms = 0
        self.sent_at = 0.0
        self.status = 0
        self.nbytes = 0

    def _move(self, to: Phase) -> None:
        if not ALLOWED_MASK[self.phase] >> to & 1:
            raise AssertionError(f"exchange cannot go from {self.phase.name} to {to.name}")
        self.phase = to

    # -- routing ----------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Route by Host and start the request (called when it is this request's turn)."""
        router = self.router
        if self.host is None:
            # RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
            self.fail(errors.BAD_REQUEST)
            return
        table = router.table
        route = table.lookup(self.host) if table is not None else None
        if route is None:
            self.fail(errors.NO_SUCH_APP)
            return
        self.route = route
        backend = router.backends.bound.get(route.name)
        if backend is None or backend.route is not route:
            backend = router.backends.get(route)
        self.backend = backend
        backend.metrics.in_flight += 1
        if route.state is _RUNNING and not route.maintenance and backend.pools:
            self._attempt()
        elif route.maintenance:
            self.fail(errors.MAINTENANCE)
        elif route.state is _RUNNING:
            self.fail(errors.NO_WEB_DYNOS)
        elif route.state is AppState.BOOTING:
            self._wait_for_boot()
        else:
            self.fail(_STATE_ERRORS[route.state])

    def _attempt(self) -> None:
        """Pick a dyno (P2C over those not yet tried) and use a pooled or new connection."""
        pools = self.backend.pools
        tried = self.tried
        if tried:
            if len(tried) >= self.router.config.connect_attempts:
                self.fail(self.failure)
                return
            pools = [pool for pool in pools if pool not in tried]
        pool = pools[0] if len(pools) == 1 else self.router.balancer.choose(pools)
        if pool is None:
            self.fail(self.failure or errors.CONNECTION_REFUSED)
            return
        self.pool = pool
        pool.in_flight += 1
        idle = pool.idle
        conn = idle.pop() if idle else None
        if conn is not None and conn.transport.is_closing():
            conn = pool.take()  # that one was closing; the next idle one, if any
        if conn is not None:
            self.reused = True
            self._attach(conn)
        else:
            self._connect(pool)

    def _connect(self, pool: DynoPool) -> None:
        self._move(CONNECTING)
        router = self.router
        loop = router.loop
        self.client.gate.pause(AWAITING_DYNO)
        self.reused = False
        started = loop.time()
        task = loop.create_task(loop.create_connection(
            partial(UpstreamConnection, pool, router), pool.host, pool.port))
        timer = loop.call_later(router.config.connect_timeout, task.cancel)
        task.add_done_callback(partial(self._connected, pool, timer, started))

    def _connected(self, pool: DynoPool, timer: asyncio.TimerHandle, started: float,
                   task: asyncio.Task) -> None:
        timer.cancel()
        if task.cancelled():
            failure: RouterError | None = errors.CONNECT_TIMEOUT
        elif task.exception() is not None:
            # Refused, reset, unreachable: the dyno is not taking connections (Heroku's H21).
            failure = errors.CONNECTION_REFUSED
        else:
            failure = None
        if self.phase is not CONNECTING or self.pool is not pool:
            # The client left (or the router gave up) while connecting: keep the connection.
            if failure is None:
                pool.give_back(task.result()[1], self.router.loop.time())
            return
        if failure is not None:
            pool.in_flight -= 1
            self.pool = None
            self.failure = failure
            if self.tried is None:
                self.tried = []
            self.tried.append(pool)
            self._attempt()
            return
        elapsed = self.router.loop.time() - started
        self.connect_ms = int(elapsed * 1000)
        self.backend.metrics.connect.observe(elapsed)
        self._attach(task.result()[1])

    def _attach(self, conn: UpstreamConnection) -> None:
        """Bind a dyno connection and send what the client sent so far."""
        if self.phase is not CONNECTING:
            self.phase = FORWARDING  # QUEUED -> FORWARDING: a pooled connection, no connect
        else:
            self._move(FORWARDING)
        self.upstream = conn
        conn.exchange = self
        client = self.client
        conn.client_transport = client.transport
        if self.reused:
            self.sent_at = self.start
            self.backend.metrics.connect.counts[0] += 1  # a pooled connection took 0 s
        else:
            self.sent_at = self.router.loop.time()
        if client.write_paused:
            conn.gate.pause(PEER_BUFFER_FULL)
        if client.gate.reasons:
            client.gate.resume(AWAITING_DYNO)
        pending = self.pending
        conn.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    def flush_request(self) -> None:
        """Write the request bytes parsed so far to the dyno."""
        pending = self.pending
        self.upstream.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    # -- the boot queue ---------------------------------------------------------------------

    def _wait_for_boot(self) -> None:
        """Heroku queues requests while an app's web dynos boot, up to 75 s (then H20)."""
        self.client.gate.pause(AWAITING_DYNO)
        self.backend.waiters.append(self)
        self.timer = self.router.loop.call_later(self.router.config.boot_queue_timeout,
                                                 self._boot_timed_out)

    def _boot_timed_out(self) -> None:
        self.timer = None
        try:
            self.backend.waiters.remove(self)
        except ValueError:
            pass  # woken in the same loop iteration; the wake-up will find the phase DONE
        self.fail(errors.BOOT_TIMEOUT)

    def booted(self, route: AppRoute) -> None:
        """The app's entry changed while this request waited: route it again."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.phase is not QUEUED:
            return
        self.client.gate.resume(AWAITING_DYNO)
        self.backend.metrics.in_flight -= 1
        self.dispatch()

    # -- the response -----------------------------------------------------------------------

    def finish(self, reusable: bool) -> None:
        """The response is complete: log, count, pool the connection, free the client."""
        router = self.router
        now = router.loop.time()
        self.phase = DONE  # RESPONDING -> DONE
        conn, pool, backend = self.upstream, self.pool, self.backend
        self.upstream = None
        pool.in_flight -= 1
        metrics = backend.metrics
        metrics.in_flight -= 1
        status = self.status
        statuses = metrics.statuses
        statuses[status] = statuses.get(status, 0) + 1
        service = now - self.sent_at
        metrics.service.observe(service)
        router.log.info(backend.route.name, self.wall + (now - self.start), self.method,
                        self.target, self.host, self.request_id, self.fwd, pool.log_name,
                        self.connect_ms, int(service * 1000), status, self.nbytes)
        conn.detach()
        if not self.request_complete:
            # The dyno answered before the whole request was sent: neither side can be reused.
            conn.close()
            self.keep_alive = False
        elif reusable and not pool.retired and len(pool.idle) < pool.max_idle:
            conn.idle_since = now
            pool.idle.append(conn)
        else:
            # Connection: close from the dyno, a body framed by closing, or a full pool.
            conn.close()
        self.client.exchange_done(self)

    # -- failures ---------------------------------------------------------------------------

    def fail(self, error: RouterError) -> None:
        """The router answers with `error` (or, mid-response, cuts the client connection)."""
        if self.phase is DONE:
            return
        responding = self.phase is RESPONDING
        self._release()
        if responding:
            self.client.response_interrupted(self, error)
        else:
            self.client.router_answer(self, error)

    def upstream_lost(self, conn: UpstreamConnection, got_bytes: bool) -> None:
        """The dyno connection closed under this exchange, response incomplete."""
        if self.phase is FORWARDING and not got_bytes and self.reused and not self.retried \
                and self.framing is NONE and self.method in IDEMPOTENT:
            # A pooled connection the dyno had already closed: send the request once more on a
            # fresh connection (nothing reached the dyno's application).
            self.retried = True
            self.upstream = None
            self.pending = [self.head]
            self._connect(self.pool)
            return
        self.fail(errors.RESPONSE_INTERRUPTED if self.phase is RESPONDING
                  else errors.CLOSED_WITHOUT_RESPONSE)

    def client_lost(self) -> None:
        """The client closed its connection before the response was complete (H27)."""
        if self.phase is DONE:
            return
        if self.route is None:
            self._move(DONE)  # never dispatched (queued behind a pipelined request)
            return
        self._release()
        self.log_error(errors.CLIENT_INTERRUPTED, errors.CLIENT_INTERRUPTED.status)

    def log_error(self, error: RouterError, status: int) -> None:
        """The log line and counters of an exchange that ended with a router error."""
        router = self.router
        now = router.loop.time()
        pool = self.pool
        attached = self.sent_at > 0
        router.log.router_error(
            self.route.name if self.route is not None else None, self.wall + (now - self.start),
            error.code, error.desc, error.level, self.method, self.target, self.host,
            self.request_id, self.fwd, pool.log_name if pool is not None else None,
            self.connect_ms if attached else None,
            int((now - self.sent_at) * 1000) if attached else None, status, self.nbytes)
        if self.backend is not None:
            self.backend.metrics.count_error(status, error.code)
        else:
            router.metrics.count_unrouted(status)

    def _release(self) -> None:
        """Give back everything the exchange holds; it ends here."""
        self._move(DONE)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            conn.detach()
            conn.close()
        if self.pool is not None:
            self.pool.in_flight -= 1
        if self.backend is not None:
            self.backend.metrics.in_flight -= 1
            try:
                self.backend.waiters.remove(self)
            except ValueError:
                pass  # it was not waiting for a boot
        self.pending = []

    def peer_buffer_full(self, full: bool) -> None:
        """The dyno connection's write buffer crossed a water mark: pace the client."""
        gate = self.client.gate
        if full:
            gate.pause(PEER_BUFFER_FULL)
        else:
            gate.resume(PEER_BUFFER_FULL)
