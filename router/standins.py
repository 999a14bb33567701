"""What takes the place of a client connection's parser where llhttp cannot go on.

httptools gives the client connection (client.py) one llhttp parser; two kinds of request
stop it although the router takes them:

- An upgrade request with a body of known length: llhttp skips the body and hands over what
  follows the head as if it all belonged to the new protocol. `UpgradeBody` reads the body
  off those bytes for the dyno, then puts the parser back.
- A head with repeated, equal Content-Length fields: RFC 9112 §6.3 lets a recipient take them
  as one, llhttp refuses them. `RepeatedLength` collects the head and has it parsed again
  without the repeats, or refuses it when the values differ.

Each stands in with the parser's one method the connection calls, `feed_data`, and is off the
request path: plain Python beside the compiled connection (router/compiled.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from httptools import HttpParserUpgrade

from router.errors import RequestRejected
from router.limits import without_repeated_lengths

if TYPE_CHECKING:
    from router.client import ClientConnection
    from router.exchange import Exchange


class UpgradeBody:
    """Stands in for the parser while an upgrade request's body arrives (httptools has llhttp
    skip it): its bytes go to the dyno as the body; once it is whole the parser is put back
    and what follows is handed over as after any upgrade request (HttpParserUpgrade)."""

    __slots__ = ("client", "exchange", "parser", "remaining")

    def __init__(self, client: ClientConnection, exchange: Exchange, parser, remaining: int):
        self.client = client
        self.exchange = exchange
        self.parser = parser
        self.remaining = remaining

    def feed_data(self, data: bytes) -> None:
        body = data[:self.remaining]
        self.remaining -= len(body)
        exchange = self.exchange
        if body:
            exchange.request_body(body)  # never chunked (unusual_request_head refuses that)
        if self.remaining:
            return
        client = self.client
        client.parser = self.parser
        client._reading = None
        exchange.request_ended([])
        raise HttpParserUpgrade(len(body))


class RepeatedLength:
    """Stands in for the parser after llhttp refused a repeated Content-Length: collects the
    head (in the connection's `_line`) until it is complete, then has it parsed again by a
    new parser with the repeats of the first value removed (RFC 9112 §6.3), or refuses the
    request when the values differ. Only for a request that began at the start of what the
    connection kept; one pipelined behind another in the same read stays refused."""

    __slots__ = ("client",)

    def __init__(self, client: ClientConnection) -> None:
        self.client = client

    def feed_data(self, data: bytes) -> None:
        client = self.client
        try:
            head = without_repeated_lengths(client._line)
        except RequestRejected as rejected:
            client._reject(rejected.error)
            return
        if head is not None:
            client._restart_head(head)
