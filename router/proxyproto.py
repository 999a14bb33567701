"""The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer names the client.

With `--proxy-protocol`, every connection must begin with a PROXY header, as HAProxy's
`accept-proxy` and nginx's `proxy_protocol` require: a TCP load balancer in front of the router
sends it so that the router sees the client's address instead of the balancer's. The address it
names becomes the client's (X-Forwarded-For, the log's `fwd`); a LOCAL (v2) or UNKNOWN (v1)
header, as health checks send, keeps the connection's own peer.

`parse_proxy_header` is the sans-IO parser; `ProxyPreamble` is the asyncio Protocol a connection
starts with: once the header is complete it hands the connection to a `ClientConnection`
(`transport.set_protocol`), so the HTTP path pays nothing for the feature.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router import errors

if TYPE_CHECKING:
    from router.server import Router

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included (spec §2.1)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16  # signature, version/command, family/transport, length
# Family and transport byte -> address size: TCP over IPv4, TCP over IPv6.
_V2_ADDRESS_SIZE = {0x11: 4, 0x21: 16}


class ProxyProtocolError(ValueError):
    """Not a PROXY protocol header (the connection is refused)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    length: int  # bytes of the header; what follows is the client's HTTP
    source: tuple[str, int] | None  # None: LOCAL / UNKNOWN, keep the connection's own peer
    destination: tuple[str, int] | None = None


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of `data`, or None if more bytes are needed."""
    if data.startswith(V2_SIGNATURE):
        return None if len(data) < V2_HEADER else _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data[:12]) or V1_PREFIX.startswith(data[:6]):
        return None  # the start of one of them: more bytes needed
    raise ProxyProtocolError("no PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line too long")
        return None
    parts = data[:end].split(b" ")
    if parts[1:2] == [b"UNKNOWN"]:
        return ProxyHeader(end + 2, None)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("PROXY v1: expected TCP4, TCP6 or UNKNOWN with 4 fields")
    version = 4 if parts[1] == b"TCP4" else 6
    source = _address(parts[2], parts[4], version)
    destination = _address(parts[3], parts[5], version)
    return ProxyHeader(end + 2, source, destination)


def _address(host: bytes, port: bytes, version: int) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyProtocolError(f"PROXY v1: bad address {host!r}") from None
    if address.version != version or not port.isdigit() or len(port) > 5 \
            or int(port) > 65535 or (len(port) > 1 and port.startswith(b"0")):
        raise ProxyProtocolError(f"PROXY v1: bad address {host!r} port {port!r}")
    return str(address), int(port)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    version_command, family, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2 or version_command & 0x0F > 1:
        raise ProxyProtocolError("PROXY v2: unknown version or command")
    total = V2_HEADER + length
    if len(data) < total:
        return None
    if version_command & 0x0F == 0:  # LOCAL: the balancer's own connection (health checks)
        return ProxyHeader(total, None)
    size = _V2_ADDRESS_SIZE.get(family)
    if size is None:
        return ProxyHeader(total, None)  # UNSPEC, UDP, Unix: no TCP client to name
    if length < 2 * size + 4:
        raise ProxyProtocolError("PROXY v2: address block too short")
    body = data[V2_HEADER:V2_HEADER + 2 * size + 4]
    source = str(ipaddress.ip_address(body[:size]))
    destination = str(ipaddress.ip_address(body[size:2 * size]))
    source_port, destination_port = struct.unpack_from("!HH", body, 2 * size)
    return ProxyHeader(total, (source, source_port), (destination, destination_port))


class ProxyPreamble(asyncio.Protocol):
    """A new connection until its PROXY header is read; then a ClientConnection's."""

    __slots__ = ("router", "transport", "buffer", "deadline")

    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.deadline = router.now + router.header_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.router.preambles.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            header = parse_proxy_header(self.buffer)
        except ProxyProtocolError:
            self._refuse()
            return
        if header is None:
            return  # bounded: v1 by its line limit, v2 by its 16-bit length
        router = self.router
        router.preambles.discard(self)
        peer = header.source[0].encode("ascii") if header.source is not None else None
        client = router.new_client()
        self.transport.set_protocol(client)
        client.connection_made(self.transport, peer)
        rest = self.buffer[header.length:]
        self.buffer = b""
        if rest:
            client.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self.router.preambles.discard(self)

    def expire(self, now: float) -> None:
        """No complete header within the head timeout."""
        self.transport.close()

    def _refuse(self) -> None:
        error = errors.BAD_PROXY_HEADER
        router = self.router
        peer = self.transport.get_extra_info("peername")
        router.log.router_error(None, time.time(), error.code, error.desc, error.level,
                                b"", b"", None, router.request_ids.next(),
                                peer[0].encode("ascii") if peer else b"", None, None, None,
                                error.status, error.body_length)
        router.metrics.count_unrouted(error.status)
        self.transport.write(error.response)
        self.transport.close()
