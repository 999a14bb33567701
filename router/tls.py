"""The TLS listener (`--listen-tls`): certificates chosen by SNI, and the ALPN hook.

asyncio does the TLS (the loop's SSL transport over the accepted socket): the listener's
default context has an SNI callback that looks the client's server name up in the
`CertificateIndex` (router/certs.py) and switches the handshake to that certificate's context
(`ssl_object.context = ...`). A name no app's certificate covers, or no name at all, gets the
default certificate; the request then gets the usual answer for its Host (an unknown one a 404).

A handshake that fails (garbage, an old protocol version, a client that gives up) ends that
connection only: asyncio closes it before any protocol of the router sees it. A handshake must
finish within the header timeout.

The ALPN hook: the listener advertises `AlpnRegistry.protocols` (RFC 7301) and, once the
handshake is done, `TlsAccept` builds the connection protocol registered for the one the client
and server agreed on (`selected_alpn_protocol()`); no ALPN, or one not registered, is HTTP/1.1.
A factory takes (router, listener) and returns an asyncio Protocol; it gets the transport
through `connection_made`. Register before `Router.start()`, which puts the list in every
context:

    router.alpn.register("h2", H2Connection)  # preferred over what was registered before

The plain listener never goes through here: HTTP/1.1 over TCP costs what it did.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from router.certs import CertificateError, CertificateIndex, self_signed, server_context
from router.client import ClientConnection
from router.routes import AppRoute

if TYPE_CHECKING:
    from router.listener import Listener
    from router.server import Router

ProtocolFactory = Callable[["Router", "Listener"], asyncio.BaseProtocol]
HTTP_1_1 = "http/1.1"


class AlpnRegistry:
    """ALPN protocol id -> connection factory, in the server's order of preference."""

    def __init__(self) -> None:
        self._factories: dict[str, ProtocolFactory] = {HTTP_1_1: ClientConnection}
        self._order: list[str] = [HTTP_1_1]

    def register(self, name: str, factory: ProtocolFactory, *, preferred: bool = True) -> None:
        """Serve `name` (e.g. "h2") with `factory`; `preferred`: chosen over the others when
        the client offers several (OpenSSL picks by the server's order)."""
        if name in self._factories:
            self._order.remove(name)
        self._factories[name] = factory
        self._order.insert(0 if preferred else len(self._order), name)

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self._order)

    def factory(self, selected: str | None) -> ProtocolFactory:
        """The factory for the negotiated protocol; HTTP/1.1 when none was negotiated."""
        return self._factories.get(selected or HTTP_1_1, self._factories[HTTP_1_1])


@dataclass(frozen=True, slots=True)
class DefaultCertificate:
    """`--tls-default-cert FILE --tls-default-key FILE`; absent: a self-signed one."""

    chain_file: Path | None = None
    key_file: Path | None = None


class TlsListener:
    """The certificates and the protocol factory of the TLS listener."""

    def __init__(self, router: Router, default: DefaultCertificate,
                 report: Callable[[str], None]) -> None:
        self.router = router
        self.alpn = router.alpn
        self._default_files = default
        self._report = report
        self.index: CertificateIndex | None = None  # made by prepare(), once ALPN is known
        self.context: ssl.SSLContext | None = None  # the default certificate's, with the SNI hook
        self.listener: Listener | None = None  # its scheme, port and log, once bound
        self._pending: list[AppRoute] | None = None  # a table installed before prepare()

    def prepare(self) -> ssl.SSLContext:
        """Load the default certificate and index the table's (at start: the ALPN list is
        final by then). -> the context to listen with."""
        protocols = self.alpn.protocols
        files = self._default_files
        if files.chain_file is not None:
            context = server_context(protocols)
            try:
                context.load_cert_chain(files.chain_file, files.key_file)
            except (OSError, ssl.SSLError) as error:
                raise CertificateError(f"--tls-default-cert/--tls-default-key: {error}") from None
        else:
            context = self_signed(protocols)
        context.sni_callback = self._server_name
        self.context = context
        self.index = CertificateIndex(protocols, self._report)
        if self._pending is not None:
            self.index.replace_all(self._pending)
            self._pending = None
        return context

    # -- the routing table's certificates ---------------------------------------------------

    def table_replaced(self, routes: Iterable[AppRoute]) -> None:
        if self.index is None:
            self._pending = list(routes)
        else:
            self.index.replace_all(routes)

    def apps_changed(self, apps: Iterable[tuple[str, AppRoute | None]]) -> None:
        if self.index is None:
            table = self.router.table
            self._pending = list(table.apps.values()) if table is not None else []
        else:
            self.index.update(apps)

    # -- connections ------------------------------------------------------------------------

    def _server_name(self, ssl_object, server_name: str | None, context) -> None:
        """OpenSSL's servername callback (RFC 6066 §3), early in the handshake."""
        if server_name:
            chosen = self.index.lookup(server_name)
            if chosen is not None:
                ssl_object.context = chosen
        return None  # go on; the default certificate when none was chosen

    def new_connection(self) -> TlsAccept:
        return TlsAccept(self)


class TlsAccept(asyncio.Protocol):
    """A TLS connection until its handshake is done: then the protocol ALPN chose takes it."""

    __slots__ = ("tls",)

    def __init__(self, tls: TlsListener) -> None:
        self.tls = tls

    def connection_made(self, transport: asyncio.Transport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        selected = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        tls = self.tls
        protocol = tls.alpn.factory(selected)(tls.router, tls.listener)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        # Never called: the handover happens in connection_made, before any data.
        raise AssertionError("TlsAccept got data after the handshake")
