"""A listener's view of the world: what its connections tell apps and write in the log.

The router has one plain listener (`--listen`) and, with `--listen-tls`, a TLS one. A connection
holds its `Listener` (router/client.py): the scheme and port that `X-Forwarded-Proto` and
`X-Forwarded-Port` carry (Heroku sets them from the listener the client reached), and the
access log whose lines end `protocol=http` or `protocol=https`. Both listeners share one log
writer, so their lines interleave in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.accesslog import AccessLog
from router.headers import RequestRewriter

if TYPE_CHECKING:
    from router.server import Router


class Listener:
    __slots__ = ("scheme", "port", "log", "_rewriter", "_trusted_rewriter", "_trusted")

    def __init__(self, router: Router, scheme: str, port: int, log: AccessLog) -> None:
        self.scheme = scheme
        self.port = port
        self.log = log
        max_name = router.config.limits.header_name
        self._rewriter = RequestRewriter(proto=scheme, port=port, request_ids=router.request_ids,
                                         max_name=max_name)
        self._trusted_rewriter = RequestRewriter(
            proto=scheme, port=port, request_ids=router.request_ids, max_name=max_name,
            trusted=True)
        self._trusted = router.trusted

    def rewriter_for(self, peer: bytes) -> RequestRewriter:
        """The forwarding rules for a connection from `peer`: a trusted balancer's
        X-Forwarded-Proto/-Port are kept, anyone else's replaced."""
        trusted = self._trusted
        if trusted is not None and peer in trusted:
            return self._trusted_rewriter
        return self._rewriter
