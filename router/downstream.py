"""What an exchange answers to: the client side of one request.

An `Exchange` (exchange.py) talks to the client through this interface only: the client's
transport (the response's bytes go there, the dyno connection writes them itself), its read
gate (back-pressure: pausing the request body), whether its writes are paused, one deadline
the exchange moves as its phase requires (timers.py), the access log its lines go to, and the
calls that end an exchange (`exchange_done`, `router_answer`, `response_interrupted`).

Two kinds implement it: an HTTP/1.1 client connection (client.py), one exchange at a time; and
an HTTP/2 stream (h2stream.py), many to a connection. Compiled, this is an extension type both
derive from, so the exchange keeps reaching the HTTP/1.1 connection's fields as C struct members
and calling its methods as C functions (downstream.pxd); the methods are `cpdef` so that the
HTTP/2 stream, a Python class, can override them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.accesslog import AccessLog
    from router.errors import RouterError
    from router.exchange import Exchange
    from router.flow import ReadGate


class Downstream:
    __slots__ = ("transport", "gate", "write_paused", "deadline", "log")

    def __init__(self, log: AccessLog) -> None:
        self.transport = None  # what the response's bytes are written to
        self.gate: ReadGate | None = None  # pauses the request's body (flow.py)
        self.write_paused = False  # the client is not taking the response as fast as it comes
        self.deadline = 0.0  # loop time; the router's sweep calls `expire` once it passed
        self.log = log  # the access log this client's requests are logged to

    def move_deadline(self, when: float) -> None:
        """The exchange being answered sets the one deadline (loop time) as its phase
        requires; the router's sweep calls `expire` once it has passed (timers.py)."""
        self.deadline = when

    def exchange_done(self, exchange: Exchange) -> None:
        """`exchange` was answered (its response is complete and logged)."""
        raise NotImplementedError

    def router_answer(self, exchange: Exchange, error: RouterError) -> None:
        """Send the router's own page for `error` instead of a response, and log it."""
        raise NotImplementedError

    def response_interrupted(self, exchange: Exchange, error: RouterError) -> None:
        """The response broke off after its head went out: log it, and show the client."""
        raise NotImplementedError

    def handed_over(self) -> None:
        """The client became one end of a tunnel (tunnel.py): HTTP is over on it."""
        raise NotImplementedError

    def take_early_data(self) -> bytes:
        """The bytes the client sent after its upgrade request, for the tunnel."""
        raise NotImplementedError
