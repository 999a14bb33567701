"""One request's journey: route state checks, dyno choice, connection, relay, log line.

An `Exchange` is created by the client connection when a request head is parsed and lives
until the response is relayed (or the router answers itself). It owns the per-request facts
(request id, timings, status, bytes) and the decisions between the two connections; the two
`Protocol`s only move bytes into and out of it.

It is the only writer of its own state: the two connections tell it what happened through its
methods (`response_began`, `request_body`, `request_ended`, `finish`, `fail`, ...) and never set
its attributes. Its phases and their transitions are the table in `states.py`; every change of
phase goes through `_move`, which checks it. Which dyno, and whether a failed
attempt is tried again, are the balancer's, the quarantine's and the retry policy's decisions
(balancer.py, quarantine.py, retry.py). Its timeouts are one deadline on the client connection
that each phase moves; the router's sweep calls `expire` when it passes (timers.py).
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from functools import partial
from typing import TYPE_CHECKING

from router import errors
from router.affinity import AFFINITY_HELD, forwarded_https, with_field
from router.errors import RequestRejected, RouterError
from router.flow import AWAITING_DYNO, PEER_BUFFER_FULL
from router.headers import CHUNKED, EXPECT_CONTINUE, LENGTH, NONE, Framing, last_chunk
from router.limits import valid_host
from router.retry import Retry
from router.routes import AppRoute, AppState
from router.states import (CONNECTING, DONE, FORWARDING, PHASE_ALLOWED, QUEUED, RESPONDING,
                           Phase, refused)
from router.tunnel import Tunnel
from router.upstream import UpstreamConnection

if TYPE_CHECKING:
    from router.downstream import Downstream
    from router.pool import AppBackend, DynoPool
    from router.server import Router


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CRLF = b"\r\n"
_NEVER = float("inf")
_RUNNING = AppState.RUNNING
_STATE_ERRORS = {
    AppState.BLANK: errors.BLANK_APP,
    AppState.SCALED_TO_ZERO: errors.NO_WEB_DYNOS,
    AppState.CRASHED: errors.APP_CRASHED,
}


def serve_backlog(backend: AppBackend, now: float, every: bool = False) -> None:
    """Route again the requests at the front of an app's backlog while the app has places for
    them (`every`: all of them, e.g. the app left the table). Each is taken once at most: one
    that finds no place queues at the back again."""
    backlog, metrics = backend.backlog, backend.metrics
    for _ in range(backlog.waiting):
        if not every and metrics.in_flight - backlog.waiting >= backend.max_in_flight:
            return
        turn = backlog.take(now)
        if turn is None:
            return
        exchange, waited = turn
        exchange.left_backlog(waited)


class Exchange:
    __slots__ = (
        # fixed at creation
        "client", "router", "method", "target", "head", "host", "request_id", "fwd",
        "framing", "is_head", "http11", "start", "wall", "flags",
        # routing
        "route", "backend", "pool", "tried", "failure", "retried", "connecting",
        # the app's backlog: when this request began to wait there (0: it is not waiting), and
        # the log line's ` queue=N wait=Mms` once it waited
        "queued_at", "queue_note",
        # progress
        "phase", "upstream", "pending", "request_complete", "keep_alive", "reused",
        "connect_ms", "sent_at", "status", "nbytes",
        # the bytes of a chunked body so far, for the app's limit (413, H25)
        "body_seen",
    )

    def __init__(self, client: Downstream, router: Router, method: bytes, target: bytes,
                 head: bytes, host: bytes | None, request_id: bytes, fwd: bytes,
                 framing: Framing, keep_alive: bool, http11: bool, start: float,
                 wall: float, flags: int = 0) -> None:
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
        self.flags = flags  # what RequestRewriter.rewrite reported (EXPECT_CONTINUE, UPGRADE..)
        self.route: AppRoute | None = None
        self.backend: AppBackend | None = None
        self.pool: DynoPool | None = None
        self.tried: list[DynoPool] | None = None
        self.failure: RouterError | None = None
        self.retried = False
        self.connecting: asyncio.Task | None = None
        self.queued_at = 0.0
        self.queue_note = b""
        self.phase = QUEUED
        self.upstream: UpstreamConnection | None = None
        self.pending: list[bytes] = [head]  # request bytes not yet written to the dyno
        self.request_complete = framing is NONE
        self.reused = False
        self.connect_ms = 0
        self.sent_at = 0.0
        self.status = 0
        self.nbytes = 0
        self.body_seen = 0

    def _move(self, to: int) -> None:
        """Every change of phase goes through here: checked against states.py's table."""
        if not PHASE_ALLOWED[self.phase][to]:
            raise refused(Phase, self.phase, to)
        self.phase = to

    # -- routing ----------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Route by Host and start the request (called when it is this request's turn)."""
        router = self.router
        table = router.table
        if table is None:
            route = None  # no table loaded yet
        else:
            # The exact-name dict first (RouteTable.lookup's first step, inlined; a subscript
            # in a try costs less than .get and a None test), then the rest.
            try:
                route = table.by_host[self.host]
            except KeyError:
                route = table.lookup(self.host)
        if route is None:
            # RFC 9112 §3.2: a Host that is not a host[:port] is a 400; an unknown one, 404.
            self.fail(errors.NO_SUCH_APP if valid_host(self.host) else errors.BAD_HOST)
            return
        self.route = route
        try:
            backend = router.backends.bound[route.name]
        except KeyError:
            backend = None
        if backend is None or backend.route is not route:
            backend = router.backends.get(route)  # first request, or a new entry: bind it
        self.backend = backend
        metrics = backend.metrics
        metrics.in_flight += 1
        if backend.challenges is not None and self._answer_challenge(backend.challenges):
            return
        if backend.max_body and self.framing is not NONE and self._over_limit():
            return
        if route.state is _RUNNING and not route.maintenance and backend.pools:
            # In flight beyond the limit (200 per dyno), those waiting in the backlog aside:
            # every dyno has its fill; wait for a place.
            if metrics.in_flight > backend.max_in_flight + backend.backlog.waiting:
                self._wait_for_room(backend)
                return
            if self.flags & EXPECT_CONTINUE:
                # RFC 9110 §10.1.1: the router answers the expectation itself, before the body.
                self.client.transport.write(_CONTINUE)
            self._attempt()
        elif route.maintenance:
            self.fail(errors.MAINTENANCE)
        elif route.state is _RUNNING:
            self.fail(errors.NO_WEB_DYNOS)
        elif route.state is AppState.BOOTING:
            self._wait_for_boot()
        else:
            self.fail(_STATE_ERRORS[route.state])

    def _answer_challenge(self, challenges: dict) -> bool:
        """An ACME HTTP-01 request for a pending token (router/challenges.py): the router
        answers it, whatever the app's state (RFC 8555 §8.3)."""
        answer = challenges.get(self.target)
        if answer is None or self.method not in (b"GET", b"HEAD"):
            return False
        self.fail(answer)
        return True

    def _over_limit(self) -> bool:
        """The app limits request bodies: a Content-Length over the limit is answered 413
        (H25) now, before any dyno is asked and without reading the body (with Expect:
        100-continue the client never sends it); a chunked body is counted as it arrives
        (request_body). -> True when the request was answered."""
        limit = self.backend.max_body
        # Chunked: what arrived before it was routed (a pipelined request) counts already.
        size = _content_length(self.head) if self.framing is LENGTH else self.body_seen
        if size <= limit:
            return False
        self.fail(errors.BODY_TOO_LARGE)
        return True

    def _attempt(self) -> None:
        """Pick a dyno (P2C) and use a pooled or new connection."""
        router = self.router
        backend = self.backend
        pools = backend.pools
        # The app has session affinity (affinity.py): the dyno the cookie pins, if usable.
        pool = self._pinned() if backend.affinity is not None else None
        if pool is None:
            if self.tried is not None or router.quarantine.members:
                pool = self._choose_carefully(pools)
                if pool is None:
                    self.fail(self.failure or errors.CONNECTION_REFUSED)
                    return
            else:
                pool = pools[0] if len(pools) == 1 else router.balancer.choose(pools)
        self.pool = pool
        in_flight = pool.in_flight = pool.in_flight + 1
        if in_flight > pool.peak:
            pool.peak = in_flight  # what its idle pool should cover (poolsize.py)
        idle = pool.idle
        conn = idle.pop() if idle else None
        if conn is not None and conn.transport.is_closing():
            conn = pool.take()  # that one was closing; the next idle one, if any
        if conn is not None:
            self.reused = True
            self._attach(conn)
        else:
            self._connect(pool)

    def _choose_carefully(self, pools):
        """P2C over the dynos not tried yet for this request and not in quarantine (or, if
        all are, the one quarantined longest ago); None when every dyno was tried."""
        tried = self.tried
        candidates = [pool for pool in pools if pool not in tried] if tried else pools
        if not candidates:
            return None
        usable = self.router.quarantine.usable(candidates)
        return usable[0] if len(usable) == 1 else self.router.balancer.choose(usable)

    def _pinned(self):
        """Session affinity: the dyno the request's cookie pins while it is in the app's
        entry, not tried yet for this request and not in quarantine; else None, for the usual
        choice (and the response will pin the dyno that answers)."""
        pool, newest = self.backend.affinity.pinned(self.head)
        tried = self.tried
        quarantine = self.router.quarantine
        if pool is not None and (tried is None or pool not in tried) \
                and (not quarantine.members or pool not in quarantine):
            if newest:
                self.flags |= AFFINITY_HELD  # the client has this cookie already
            else:
                self.flags &= ~AFFINITY_HELD  # signed by an older key: sign it again
            return pool
        self.flags &= ~AFFINITY_HELD
        return None

    def affinity_cookie(self, head: bytes) -> bytes:
        """The response head for the client with the cookie pinning the dyno that answered,
        unless the request's cookie pinned it already (affinity.py)."""
        if self.flags & AFFINITY_HELD:
            return head
        field = self.backend.affinity.set_cookie(self.pool, forwarded_https(self.head))
        return with_field(head, field) if field else head

    def _connect(self, pool: DynoPool) -> None:
        self._move(CONNECTING)
        router = self.router
        loop = router.loop
        client = self.client
        client.gate.pause(AWAITING_DYNO)
        self.reused = False
        started = loop.time()
        client.move_deadline(started + router.config.connect_timeout)  # the sweep cancels it
        router.metrics.dyno_connects += 1
        task = self.connecting = loop.create_task(loop.create_connection(
            partial(UpstreamConnection, pool, router), pool.host, pool.port))
        task.add_done_callback(partial(self._connected, pool, started))

    def _connected(self, pool: DynoPool, started: float, task: asyncio.Task) -> None:
        if self.connecting is task:
            self.connecting = None
        if task.cancelled():
            failure: RouterError | None = errors.CONNECT_TIMEOUT
        elif task.exception() is not None:
            # Refused, reset, unreachable: the dyno is not taking connections (Heroku's H21).
            failure = errors.CONNECTION_REFUSED
        else:
            failure = None
        router = self.router
        if self.phase != CONNECTING or self.pool is not pool:
            # The client left (or the router gave up) while connecting: keep the connection.
            if failure is None:
                pool.give_back(task.result()[1], router.loop.time())
            return
        if failure is not None:
            pool.in_flight -= 1
            self.pool = None
            self.failure = failure
            if self.tried is None:
                self.tried = []
            self.tried.append(pool)
            router.quarantine.fail(pool)
            untried = sum(1 for p in self.backend.pools if p not in self.tried)
            if router.retry.after_connect_failure(len(self.tried), untried) is Retry.GIVE_UP:
                self.fail(failure)
            else:
                self._attempt()
            return
        router.quarantine.release(pool)
        elapsed = router.loop.time() - started
        self.connect_ms = int(elapsed * 1000)
        self.backend.metrics.connect.observe(elapsed)
        self._attach(task.result()[1])

    def _attach(self, conn: UpstreamConnection) -> None:
        """Bind a dyno connection and send what the client sent so far."""
        self._move(FORWARDING)  # from QUEUED with a pooled connection, else CONNECTING
        self.upstream = conn
        client = self.client
        conn.attach(self, client.transport)
        if self.reused:
            sent_at = self.sent_at = self.start
            self.backend.metrics.connect.counts[0] += 1  # a pooled connection took 0 s
        else:
            sent_at = self.sent_at = self.router.loop.time()
        # Sent whole: the request timeout runs (H12); else the client is sending its body.
        client.move_deadline(sent_at + (self.backend.request_timeout if self.request_complete
                                        else self.router.idle_timeout))
        if client.write_paused:
            conn.gate.pause(PEER_BUFFER_FULL)
        if client.gate.reasons:
            client.gate.resume(AWAITING_DYNO)
        pending = self.pending
        conn.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    def request_body(self, data: bytes) -> None:
        """A piece of the request's body, (re-)framed for the dyno; it leaves with the others
        parsed from the same read (flush_request)."""
        if self.phase == DONE:
            return  # the exchange ended early (router answer, or the dyno answered already)
        if self.framing is CHUNKED:
            seen = self.body_seen = self.body_seen + len(data)
            backend = self.backend
            if backend is not None and backend.max_body and seen > backend.max_body:
                # Over the app's limit: 413 if no response began, else the connection is cut
                # (the client connection answers this as any broken request, via fail()).
                raise RequestRejected(errors.BODY_TOO_LARGE)
            self.pending += (b"%x\r\n" % len(data), data, _CRLF)
        else:
            self.pending.append(data)

    def request_ended(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """The client's body ended (with these trailer fields, if chunked): once it is on its way
        the request timeout (H12) starts."""
        if self.phase == DONE:
            return
        if self.framing is CHUNKED:
            self.pending.append(last_chunk(trailers))
        self.request_complete = True
        if self.upstream is not None and self.phase == FORWARDING:
            self.client.move_deadline(self.router.now + self.backend.request_timeout)

    def flush_request(self) -> None:
        """Write the request bytes parsed so far to the dyno."""
        pending = self.pending
        self.upstream.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    # -- the boot queue ---------------------------------------------------------------------

    def _wait_for_boot(self) -> None:
        """Heroku queues requests while an app's web dynos boot, up to 75 s (then H20)."""
        client = self.client
        client.gate.pause(AWAITING_DYNO)
        self.backend.waiters.append(self)
        client.move_deadline(self.router.now + self.router.config.boot_queue_timeout)

    def booted(self, route: AppRoute | None) -> None:
        """The app's entry changed while this request waited: route it again."""
        if self.phase != QUEUED:
            return
        self.client.gate.resume(AWAITING_DYNO)
        self.backend.metrics.in_flight -= 1
        self.dispatch()

    def _wait_for_room(self, backend: AppBackend) -> None:
        """Every dyno of the app has its fill of requests: wait in the app's backlog, first
        come first served, or H11 when it is already too deep (backlog.py)."""
        router = self.router
        now = router.now
        backlog = backend.backlog
        if not backlog.admit(self, now):
            self.fail(errors.BACKLOG_TOO_DEEP)
            return
        backend.metrics.queued = backlog.waiting
        self.queued_at = now
        self.queue_note = b" queue=%d" % backlog.waiting
        client = self.client
        if not self.request_complete:
            # A body to come waits with the request (reading paused: nothing is buffered).
            # A complete request keeps its connection read, so that a client that leaves the
            # backlog is noticed (H27) and its place freed; a pipelined request behind it
            # pauses reading by itself.
            client.gate.pause(AWAITING_DYNO)
        client.move_deadline(now + router.config.queue_timeout)

    def left_backlog(self, waited: float) -> None:
        """A place freed up and this request's turn came: route it again (it now may go)."""
        self.queued_at = 0.0
        self.queue_note += b" wait=%dms" % int(waited * 1000)
        metrics = self.backend.metrics
        metrics.queued = self.backend.backlog.waiting
        metrics.queue_wait.observe(waited)
        self.booted(self.route)

    # -- deadlines --------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """The client connection's deadline passed while this exchange was being answered."""
        client = self.client
        client.move_deadline(_NEVER)  # whatever happens next sets a new one, or ends it
        phase = self.phase
        if phase == CONNECTING:
            if self.connecting is not None:
                self.connecting.cancel()  # -> _connected: H19, quarantine, another dyno
        elif phase == QUEUED:
            # Waiting for a place in the backlog past --queue-timeout (H11), or for a boot (H20).
            self.fail(errors.BACKLOG_TOO_DEEP if self.queued_at else errors.BOOT_TIMEOUT)
        elif phase == FORWARDING:
            if self.request_complete:
                self.fail(errors.REQUEST_TIMEOUT)  # H12: no response byte in time
            elif client.gate.reasons & PEER_BUFFER_FULL:
                self.fail(errors.DYNO_IDLE)  # H15: the dyno stopped reading the body
            else:
                self.fail(errors.CLIENT_IDLE)  # H28: the client stopped sending it
        elif phase == RESPONDING:
            upstream = self.upstream
            if upstream is not None and upstream.gate.reasons & PEER_BUFFER_FULL:
                self.fail(errors.CLIENT_IDLE)  # H28: the client stopped reading
            else:
                self.fail(errors.DYNO_IDLE)  # H15: the dyno stopped sending

    # -- the response -----------------------------------------------------------------------

    def response_began(self, status: int, keep_alive: bool) -> None:
        """The dyno's final response head was made for the client (upstream.py): `keep_alive`
        is whether the client connection stays open after it (the head says so)."""
        self._move(RESPONDING)
        self.status = status
        self.keep_alive = keep_alive

    def head_withheld(self) -> None:
        """The response was refused before its head left (upstream.py's `_refuse`): the client
        can still get the router's page instead."""
        self._move(FORWARDING)

    def relaying(self) -> None:
        """Part of the response went to the client: the rolling idle timeout runs (H15/H28)."""
        router = self.router
        self.client.move_deadline(router.now + router.idle_timeout)

    def stop_keeping_alive(self) -> None:
        """The router is stopping: "Connection: close" if the response head has not gone out."""
        self.keep_alive = False

    def finish(self, reusable: bool, note: bytes = b"") -> None:
        """The response is complete: log, count, pool the connection, free the client.
        `note`: logged after the line's usual fields (what happened to the dyno connection)."""
        router = self.router
        now = router.loop.time()
        self._move(DONE)
        conn, pool, backend = self.upstream, self.pool, self.backend
        self.upstream = None
        nbytes = self.nbytes = conn.relayed
        pool.in_flight -= 1
        metrics = backend.metrics
        metrics.in_flight -= 1
        status = self.status
        try:  # (a dict subscript in a try costs less than .get, once per request)
            metrics.statuses[status] += 1
        except KeyError:
            metrics.statuses[status] = 1
        service = now - self.sent_at
        histogram = metrics.service  # Histogram.observe(), inlined: once per request
        histogram.counts[bisect_left(histogram.bounds, service)] += 1
        histogram.total += service
        if self.queue_note:
            note = self.queue_note + note
        self.client.log.info(pool.app, self.wall + (now - self.start), self.method,
                             self.target, self.host, self.request_id, self.fwd,
                             pool.log_name, self.connect_ms, int(service * 1000), status,
                             nbytes, note)
        conn.detach()
        if not self.request_complete:
            # The dyno answered before the whole request was sent: neither side can be reused.
            conn.close()
            self.keep_alive = False
        elif reusable:
            pool.give_back(conn, now)  # (closed there if the pool is full or retired)
        else:
            # Connection: close from the dyno, a body framed by closing, or a bad response.
            conn.close()
        if backend.backlog.waiting:
            serve_backlog(backend, now)  # its place is free: the backlog's first takes it
        self.client.exchange_done(self)

    # -- failures ---------------------------------------------------------------------------

    def fail(self, error: RouterError) -> None:
        """The router answers with `error` (or, mid-response, cuts the client connection)."""
        if self.phase == DONE:
            return
        responding = self.phase == RESPONDING
        self._release()
        if responding:
            self.client.response_interrupted(self, error)
        else:
            if not self.is_head:
                self.nbytes = error.body_length
            self.client.router_answer(self, error)

    def upgraded(self, conn: UpstreamConnection, from_dyno: bytes) -> None:
        """The dyno switched protocols (101, relayed already): log and count the request,
        and hand both connections to a byte-transparent tunnel (tunnel.py)."""
        router = self.router
        now = router.loop.time()
        self._move(DONE)  # FORWARDING -> DONE: a 101 has no response body
        self.status = 101
        pool, backend = self.pool, self.backend
        self.upstream = None
        pool.in_flight -= 1
        metrics = backend.metrics
        metrics.in_flight -= 1
        metrics.statuses[101] = metrics.statuses.get(101, 0) + 1
        service = now - self.sent_at
        metrics.service.observe(service)
        self.client.log.info(pool.app, self.wall + (now - self.start), self.method,
                             self.target, self.host, self.request_id, self.fwd,
                             pool.log_name, self.connect_ms, int(service * 1000), 101, 0,
                             self.queue_note)
        if backend.backlog.waiting:
            serve_backlog(backend, now)
        client = self.client
        Tunnel(router, client.transport, conn.transport, client.take_early_data(), from_dyno)
        client.handed_over()
        conn.handed_over()

    def upstream_lost(self, conn: UpstreamConnection, got_bytes: bool) -> None:
        """The dyno connection closed under this exchange, response incomplete."""
        if self.phase == FORWARDING and self.router.retry.after_connection_closed(
                method=self.method, has_body=self.framing is not NONE, reused=self.reused,
                response_started=got_bytes, retried=self.retried) is Retry.FRESH_CONNECTION:
            # A pooled connection the dyno had already closed: send the request once more on a
            # fresh connection (nothing reached the dyno's application).
            self.retried = True
            self.upstream = None
            self.pending = [self.head]
            self._connect(self.pool)
            return
        if self.phase == FORWARDING and not got_bytes:
            # Accepted, then closed without a byte of answer: how a dyno that is dying looks
            # (its VM's kernel still accepts while the process goes). Skipped like one that
            # refuses, so a dead VM costs each router at most one H13 per dyno beyond the
            # requests already in flight (nginx's max_fails counts this error too).
            self.router.quarantine.fail(self.pool)
        self.fail(errors.RESPONSE_INTERRUPTED if self.phase == RESPONDING
                  else errors.CLOSED_WITHOUT_RESPONSE)

    def client_lost(self) -> None:
        """The client closed its connection before the response was complete (H27)."""
        if self.phase == DONE:
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
        self.client.log.router_error(
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
        if self.connecting is not None:
            self.connecting.cancel()  # nobody waits for that connection any more
            self.connecting = None
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            self.nbytes = conn.relayed  # the response's body bytes relayed so far
            conn.detach()
            conn.close()
        if self.pool is not None:
            self.pool.in_flight -= 1
        backend = self.backend
        if backend is not None:
            backend.metrics.in_flight -= 1
            if self.queued_at:
                self.queued_at = 0.0
                backend.backlog.leave(self)  # its client left, or its wait ran out
                backend.metrics.queued = backend.backlog.waiting
            else:
                try:
                    backend.waiters.remove(self)
                except ValueError:
                    pass  # it was not waiting for a boot
                if backend.backlog.waiting:
                    serve_backlog(backend, self.router.now)  # a place may be free now
        self.pending = []

    def peer_buffer_full(self, full: bool) -> None:
        """The dyno connection's write buffer crossed a water mark: pace the client."""
        gate = self.client.gate
        if full:
            gate.pause(PEER_BUFFER_FULL)
        else:
            gate.resume(PEER_BUFFER_FULL)


def _content_length(head: bytes) -> int:
    """The Content-Length of a request head the rewriter passed (exactly one such field, its
    value digits: llhttp checked them, repeats of one value were merged)."""
    start = head.lower().index(b"\r\ncontent-length:") + 17
    return int(head[start:head.index(b"\r\n", start)])
