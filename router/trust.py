"""Which peers are trusted load balancers (`--trusted-proxies`).

A connection from a trusted peer is forwarded with the rules for a load balancer in front of
the router: its X-Forwarded-Proto/-Port describe the client's connection and are kept, and its
X-Forwarded-For already ends with the client, so the balancer itself is not appended (see
`RequestRewriter(trusted=True)`). The answer is computed once per peer address, not per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from router.config import Network


class TrustedProxies:
    __slots__ = ("networks", "_known")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self._known: dict[bytes, bool] = {}  # peer address -> trusted; bounded

    def __contains__(self, peer: bytes) -> bool:
        trusted = self._known.get(peer)
        if trusted is None:
            trusted = self._decide(peer)
            if len(self._known) >= 4096:
                self._known.clear()
            self._known[peer] = trusted
        return trusted

    def _decide(self, peer: bytes) -> bool:
        try:
            address = ipaddress.ip_address(peer.decode("ascii"))
        except ValueError:
            return False  # not an IP address (a scoped IPv6 address, a Unix socket): untrusted
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
        return any(address in network for network in self.networks
                   if network.version == address.version)
