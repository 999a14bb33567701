"""Getting a batch of frames to a drain's receiver: a syslog TCP/TLS stream, or HTTPS POSTs.

A transport sends one `Batch` at a time and either returns (the receiver has it) or raises
`DeliveryFailed` with a reason fit for `dynomesh drains`; the delivery loop decides when to
try again. Every step has a deadline, so a receiver that stops reading costs a failed attempt,
never a stuck task.

- **syslog** (`SyslogTransport`): one long-lived TCP connection (inside TLS for
  `syslog+tls`, the server's certificate checked against the host name), frames written back
  to back (RFC 6587 octet counting). A batch is sent once the kernel took all of it; a
  receiver that closed the connection is noticed before the next batch and reconnected to.
- **HTTPS** (`HttpsTransport`): one POST per batch with Logplex's headers; any 2xx is
  success (a redirect is not followed). A batch sent again keeps its `Logplex-Frame-Id`, so a receiver can tell a retry
  from new lines.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import NamedTuple, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from dynomesh.feedclient import describe_error
from controlplane.drains.urls import DrainKind, DrainUrl, masked

CONTENT_TYPE = "application/logplex-1"
USER_AGENT = "dynomesh-drain"


class Batch(NamedTuple):
    payload: bytes  # octet-counted frames
    count: int  # messages in it (Logplex-Msg-Count)
    frame_id: str  # the same on every attempt (Logplex-Frame-Id)


class DeliveryFailed(Exception):
    """The receiver does not have the batch; the message says why."""


class Transport(Protocol):
    async def send(self, batch: Batch) -> None: ...

    async def aclose(self) -> None: ...


class SyslogTransport:
    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, *,
                 timeout: float) -> None:
        self._host = host
        self._port = port
        self._ssl = context
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, batch: Batch) -> None:
        if self._writer is not None and (self._writer.is_closing() or self._reader.at_eof()):
            await self.aclose()  # the receiver hung up since the last batch
        try:
            async with asyncio.timeout(self._timeout):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(
                        self._host, self._port, ssl=self._ssl,
                        server_hostname=self._host if self._ssl else None)
                self._writer.write(batch.payload)
                await self._writer.drain()
        except TimeoutError:
            await self.aclose()
            raise DeliveryFailed(f"{self._where()} took nothing for {self._timeout:g} s") \
                from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            await self.aclose()
            raise DeliveryFailed(f"{self._where()}: {describe_error(exc)}") from exc

    def _where(self) -> str:
        return f"{self._host}:{self._port}"

    async def aclose(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        # Abort: a receiver that does not read would hold a graceful close up too.
        writer.transport.abort()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError, ConnectionError):
            pass  # the connection is being dropped because it failed; that is known


class HttpsTransport:
    def __init__(self, url: str, token: str, context: ssl.SSLContext | None, *,
                 timeout: float) -> None:
        parts = urlsplit(url)
        # Credentials go in an Authorization header (Basic), not in the URL aiohttp logs.
        self._auth = ((unquote(parts.username or ""), unquote(parts.password or ""))
                      if parts.username or parts.password else None)
        self._url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path or "/",
                                parts.query, ""))
        self._token = token
        self._ssl = context
        self._timeout = timeout
        self._session = None

    def _open(self):
        import aiohttp

        if self._session is None:
            headers = {"User-Agent": USER_AGENT, "Content-Type": CONTENT_TYPE,
                       "Logplex-Drain-Token": self._token}
            if self._auth:
                headers["Authorization"] = aiohttp.encode_basic_auth(*self._auth)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else True, limit=1),
                timeout=aiohttp.ClientTimeout(total=self._timeout), headers=headers)
        return self._session

    async def send(self, batch: Batch) -> None:
        import aiohttp

        session = self._open()
        headers = {"Logplex-Msg-Count": str(batch.count), "Logplex-Frame-Id": batch.frame_id}
        try:
            # A redirect is not followed: it would turn the POST into a GET elsewhere.
            async with session.post(self._url, data=batch.payload, headers=headers,
                                    allow_redirects=False) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            # An error may quote the URL, and its query may hold a key.
            reason = describe_error(exc).replace(self._url, masked(self._url))
            raise DeliveryFailed(reason) from exc
        if not 200 <= status < 300:
            raise DeliveryFailed(f"the receiver answered HTTP {status}")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def transport_for(target: DrainUrl, token: str, context: ssl.SSLContext | None, *,
                  timeout: float) -> Transport:
    """The transport for a drain URL; `context` verifies TLS receivers (None: the system's)."""
    if target.kind is DrainKind.HTTPS:
        return HttpsTransport(target.url, token, context, timeout=timeout)
    tls = (context or ssl.create_default_context()) if target.kind.tls else None
    return SyslogTransport(target.host, target.port, tls, timeout=timeout)
