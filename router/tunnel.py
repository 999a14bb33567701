"""A byte-transparent tunnel between a client and a dyno, after a 101 Switching Protocols.

Once the dyno accepts an upgrade (WebSocket or any other protocol, RFC 9110 §7.8), HTTP ends on
both connections: each transport gets a `TunnelEnd` as its protocol (`set_protocol`), and every
byte read on one side is written to the other, unparsed. Back-pressure as for bodies: a full
write buffer on one side pauses reading on the other. Either side closing (or half-closing)
closes the other once what was written to it has been flushed. The idle timeout still applies:
the tunnel has a deadline that each byte moves, and the router's sweep closes a tunnel whose
deadline passed (timers.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.server import Router


class TunnelEnd(asyncio.Protocol):
    """One side of a tunnel: what it reads goes to `peer`."""

    __slots__ = ("tunnel", "transport", "peer")

    def __init__(self, tunnel: Tunnel, transport: asyncio.Transport,
                 peer: asyncio.Transport) -> None:
        self.tunnel = tunnel
        self.transport = transport
        self.peer = peer

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        self.peer.write(data)
        tunnel.deadline = tunnel.router.now + tunnel.router.idle_timeout

    def eof_received(self) -> bool:
        return False  # "either side closing closes the other": no half-open tunnels

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.close()

    def pause_writing(self) -> None:
        self.peer.pause_reading()  # the other side waits until this one drains

    def resume_writing(self) -> None:
        if not self.peer.is_closing():
            self.peer.resume_reading()


class Tunnel:
    __slots__ = ("router", "client", "dyno", "deadline", "closed")

    def __init__(self, router: Router, client: asyncio.Transport, dyno: asyncio.Transport,
                 from_client: bytes = b"", from_dyno: bytes = b"") -> None:
        """Take over both transports; `from_client` / `from_dyno` are bytes that arrived with
        the upgrade request / the 101 response, beyond the HTTP message."""
        self.router = router
        self.client = client
        self.dyno = dyno
        self.closed = False
        self.deadline = router.now + router.idle_timeout
        router.tunnels.add(self)
        client.set_protocol(TunnelEnd(self, client, dyno))
        dyno.set_protocol(TunnelEnd(self, dyno, client))
        if from_dyno:
            client.write(from_dyno)
        if from_client:
            dyno.write(from_client)
        for transport in (client, dyno):
            if not transport.is_closing():
                transport.resume_reading()  # HTTP may have paused them (pipelining, waiting)

    def close(self) -> None:
        """Close both sides (each after flushing what was written to it)."""
        if self.closed:
            return
        self.closed = True
        self.router.tunnels.discard(self)
        self.client.close()
        self.dyno.close()
        if self.router.draining is not None:
            self.router.check_drained()

    def expire(self, now: float) -> None:
        """No byte either way for the idle timeout: the tunnel ends."""
        self.close()
