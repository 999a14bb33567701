"""The control plane's REST API from the CLI's side: one aiohttp session, errors as exit codes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from controlplane.cli.errors import CliError, Exit

# Long enough for a slug upload on a slow link; a dead control plane is caught by connect.
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=300)


class ApiClient:
    def __init__(self, api: str, token: str) -> None:
        self.api = api
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "ApiClient":
        self._session = aiohttp.ClientSession(
            timeout=TIMEOUT, headers={"Authorization": f"Bearer {self._token}",
                                      "Accept": "application/json",
                                      "User-Agent": "dynomesh-cli"})
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._session.close()

    async def call(self, method: str, path: str, *, json_body: Any = None,
                   data: bytes | AsyncIterator[bytes] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[Any, dict[str, str]]:
        """(decoded JSON body, response headers); raises CliError for any failure."""
        try:
            async with self._session.request(method, self.api + path, json=json_body, data=data,
                                             headers=headers) as response:
                text = await response.text()
                body = _decode(text)
                if response.status >= 400:
                    raise _failure(response.status, body, text)
                return body, dict(response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc

    async def get(self, path: str) -> Any:
        return (await self.call("GET", path))[0]

    @contextlib.asynccontextmanager
    async def stream(self, path: str, *, params: dict[str, str], headers: dict[str, str],
                     read_timeout: float | None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A response read as it arrives (a log tail); any failure, while opening or while
        reading, raises CliError as `call` does. `read_timeout` bounds the wait for a byte."""
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=read_timeout)
        try:
            async with self._session.get(self.api + path, params=params, headers=headers,
                                         timeout=timeout) as response:
                if response.status >= 400:
                    text = await response.text()
                    raise _failure(response.status, _decode(text), text)
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc

    @contextlib.asynccontextmanager
    async def websocket(self, url: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A WebSocket to `url` (on the control plane) with this client's token; failing to
        open it raises CliError as `call` does."""
        try:
            ws = await self._session.ws_connect(url, heartbeat=30.0,
                                                max_msg_size=4 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as exc:
            raise _failure(exc.status, None, exc.message) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc
        try:
            yield ws
        finally:
            await ws.close()

    def _unavailable(self, exc: Exception) -> CliError:
        if isinstance(exc, aiohttp.ClientConnectorError):
            return CliError(Exit.UNAVAILABLE, (
                f"cannot reach the control plane at {self.api} ({exc.os_error.strerror or exc}): "
                "start it with `dynomesh control`, or set DYNOMESH_API to where it runs"))
        return CliError(Exit.UNAVAILABLE, (
            f"the connection to the control plane at {self.api} failed "
            f"({exc or type(exc).__name__}): try again"))


def _decode(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _failure(status: int, body: Any, text: str) -> CliError:
    message = body.get("message") if isinstance(body, dict) else None
    message = message or text.strip()[:200] or f"HTTP {status}"
    if status == 401:
        return CliError(Exit.AUTH, f"not logged in: {message}")
    if status == 403:
        return CliError(Exit.AUTH, f"not allowed: {message}")
    if status == 404:
        return CliError(Exit.NOT_FOUND, message)
    if status >= 500 and _error_id(body).startswith("addon_"):
        # the add-on server, not the control plane, failed; the message says what to do
        return CliError(Exit.UNAVAILABLE, message)
    if status >= 500:
        return CliError(Exit.UNAVAILABLE, f"the control plane failed ({status}): {message}")
    return CliError(Exit.REFUSED, message)


def _error_id(body: Any) -> str:
    error_id = body.get("id") if isinstance(body, dict) else None
    return error_id if isinstance(error_id, str) else ""
