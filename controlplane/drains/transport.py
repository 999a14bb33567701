"""Getting a batch of frames to a drain's receiver: a syslog TCP/TLS stream, or HTTPS POSTs.

A transport sends one `Batch` at a time and either returns (the receiver has it) or raises
`DeliveryFailed` with a reason fit for `dynomesh drains`; the delivery loop decides when to
try again. Every step has a deadline, so a receiver that stops reading costs a failed attempt,
never a stuck task.

- **syslog** (`SyslogTransport`): one long-lived TCP connection (inside TLS for
  `syslog+tls`, the server's certificate checked against the host name), frames written back
  to back (RFC 6587 octet counting). A batch is sent once the kernel took all of it (asyncio
  buffers nothing: its write high-water mark is 0); a receiver that closed the connection is
  noticed before the next batch and reconnected to. Closing is graceful (what the kernel holds
  still goes), cut short only when the receiver stopped reading. Known gap: over TLS, a
  connection aborted after a failed attempt while the receiver does not read loses lines
  already counted as sent (a test marks it, xfail).
- **HTTPS** (`HttpsTransport`): one POST per batch with Logplex's headers; any 2xx is
  success (a redirect is not followed). A batch sent again keeps its `Logplex-Frame-Id`, so a
  receiver can tell a retry from new lines. The answer's body is read up to a few KB only.

A failure's reason names the receiver by host and port and the error by its type: never the
URL, which may hold a key (an HTTP library's error text quotes it in its own encoding).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import NamedTuple, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from dynomesh.feedclient import describe_error
from controlplane.drains.urls import DrainKind, DrainUrl

log = logging.getLogger("dynomesh.drains")
CONTENT_TYPE = "application/logplex-1"
USER_AGENT = "dynomesh-drain"
# A receiver's answer says nothing the delivery uses beyond its status: this much of its body
# is read (so that the connection can carry the next POST); past it the connection is closed.
ANSWER_BYTES = 4096
# A graceful close waits this long for the receiver to take what the kernel still holds (a
# closing TLS connection's close_notify, the last bytes of a cut-short batch) before giving up.
CLOSE_TIMEOUT = 2.0


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
            await self._drop()  # the receiver hung up since the last batch
        try:
            async with asyncio.timeout(self._timeout):
                if self._writer is None:
                    self._reader, self._writer = await self._connect()
                self._writer.write(batch.payload)
                # With a high-water mark of 0, this returns once the kernel took every byte:
                # a batch counted as sent is never left in a buffer that a close throws away.
                await self._writer.drain()
        except TimeoutError:
            await self._drop()
            raise DeliveryFailed(f"{self._where()} took nothing for {self._timeout:g} s") \
                from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            await self._drop()
            raise DeliveryFailed(f"{self._where()}: {describe_error(exc)}") from exc

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self._host, port=self._port)
        # The socket's transport pauses its writer (drain() waits) while it holds any byte.
        writer.transport.set_write_buffer_limits(0)
        if self._ssl is not None:
            await writer.start_tls(self._ssl, server_hostname=self._host)
            # asyncio's TLS transport pauses at `size >= high`: from 1 byte held, not 0
            # (that would pause it for good). It does not count what its last write left in
            # the socket's transport below it; a graceful close sends that too.
            writer.transport.set_write_buffer_limits(high=1, low=0)
        return reader, writer

    def _where(self) -> str:
        return f"{self._host}:{self._port}"

    async def _drop(self) -> None:
        """Close a connection that failed: at once, and what it still buffers is lost (the
        batch in it was not counted as sent, and is sent again whole)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.transport.abort()
            await self._closed(writer)

    async def aclose(self) -> None:
        """Close gracefully (the delivery stops: a handover, the node stopping); abort if the
        receiver does not take the rest within CLOSE_TIMEOUT."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        if not await self._closed(writer, CLOSE_TIMEOUT):
            log.info("drains: %s did not take the end of the connection in %g s; cut off",
                     self._where(), CLOSE_TIMEOUT)
            writer.transport.abort()
            await self._closed(writer)

    async def _closed(self, writer: asyncio.StreamWriter, timeout: float | None = None) -> bool:
        """Until the connection is closed (False: not within `timeout`). A connection that
        ends in an error is closed too; the error is only logged, as the connection is gone."""
        try:
            async with asyncio.timeout(timeout):
                await writer.wait_closed()
        except TimeoutError:
            return False
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            log.debug("drains: the connection to %s ended with %s", self._where(),
                      describe_error(exc))
        return True


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
                status = response.status
                await _skip_answer(response)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise DeliveryFailed(self._reason(exc)) from exc
        if not 200 <= status < 300:
            raise DeliveryFailed(f"the receiver answered HTTP {status}")

    def _reason(self, exc: BaseException) -> str:
        """Why a POST failed, from the error's type (and the OS's or TLS's reason), naming
        the receiver by host and port: the text of an aiohttp error may quote the URL, in
        yarl's encoding, so no masking of the URL as given would reliably hide its key."""
        parts = urlsplit(self._url)
        where = f"{parts.hostname}:{parts.port or 443}"
        if isinstance(exc, asyncio.TimeoutError):
            return f"{where} gave no answer in {self._timeout:g} s"
        cause = (getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None)
                 or exc)
        detail = None
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = f"{cause.reason}: {cause.verify_message}"
        elif isinstance(cause, ssl.SSLError):
            detail = cause.reason
        elif isinstance(cause, OSError):
            detail = cause.strerror
        name = type(cause).__name__
        if cause is not exc:
            name = f"{type(exc).__name__}: {name}"
        return f"{where}: {name} ({detail})" if detail else f"{where}: {name}"

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _skip_answer(response) -> None:
    """Read the answer's body, which the delivery does not use, up to ANSWER_BYTES; a longer
    one (or one that never ends) is cut off by closing the connection, not held in memory."""
    left = ANSWER_BYTES
    while left > 0 and not response.content.at_eof():  # at most ANSWER_BYTES reads
        chunk = await response.content.read(left)
        if not chunk:
            break
        left -= len(chunk)
    if not response.content.at_eof():
        response.close()


def transport_for(target: DrainUrl, token: str, context: ssl.SSLContext | None, *,
                  timeout: float) -> Transport:
    """The transport for a drain URL; `context` verifies TLS receivers (None: the system's)."""
    if target.kind is DrainKind.HTTPS:
        return HttpsTransport(target.url, token, context, timeout=timeout)
    tls = (context or ssl.create_default_context()) if target.kind.tls else None
    return SyslogTransport(target.host, target.port, tls, timeout=timeout)
