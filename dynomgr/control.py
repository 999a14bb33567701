"""The dyno manager's HTTP client for the control plane's API (docs/api.md, docs/feeds.md).

One aiohttp session, the list of control URLs and the agent's token. A call goes to the URL that
answered last and moves on to the next when one cannot be reached or fails (5xx), so an agent
given several control nodes keeps reporting while one of them is down. Failures are typed, so
callers decide without looking at status codes:

- `ControlUnavailable`: unreachable, timed out or 5xx — try again later;
- `ControlRefused`: 401/403 — the token (revoked, of the wrong role, another control plane's);
- `ControlNotFound`: 404 — e.g. a VM the control plane does not know (register again);
- `ControlRejected`: another 4xx — the request itself is wrong; retrying cannot help.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from dynomesh.feedclient import api_error_message, describe_error


class ControlError(Exception):
    """A request to the control plane failed; the message is for an operator."""


class ControlUnavailable(ControlError):
    pass


class ControlAnswered(ControlError):
    """The control plane answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class ControlRefused(ControlAnswered):
    pass


class ControlNotFound(ControlAnswered):
    pass


class ControlRejected(ControlAnswered):
    pass


class ControlPlane:
    def __init__(self, urls: tuple[str, ...], token: str, *, timeout: float = 10.0) -> None:
        if not urls:
            raise ValueError("at least one control plane URL is needed")
        self.urls = urls
        self._token = token
        self._timeout = timeout
        self._preferred = 0
        self._session = None

    @property
    def url(self) -> str:
        """The control URL that answered last (the first one until then)."""
        return self.urls[self._preferred]

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def slug_urls(self, url: str) -> list[str] | None:
        """For a slug URL on one of our control planes: the same path on each of them, that
        one first (docs/feeds.md: any control URL it follows serves it). None for a URL
        elsewhere, which must never see the token."""
        for index, base in enumerate(self.urls):
            if url.startswith(base + "/"):
                rest = url[len(base):]
                order = [base] + [u for i, u in enumerate(self.urls) if i != index]
                return [u + rest for u in order]
        return None

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of `method path` on the first control URL that answers."""
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers=self.auth_headers())
        failures = []
        for step in range(len(self.urls)):
            index = (self._preferred + step) % len(self.urls)
            url = self.urls[index]
            try:
                async with self._session.request(method, url + path, json=body) as response:
                    text = await response.text()
                    if response.status >= 500:
                        failures.append(f"{url}: HTTP {response.status}: {api_error_message(text)}")
                        continue
                    self._preferred = index
                    if response.status >= 400:
                        raise _answered(response.status, api_error_message(text))
                    return json.loads(text) if text else None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                failures.append(f"{url}: {describe_error(error)}")
            except ValueError as error:  # a 2xx whose body is not JSON: a broken server
                failures.append(f"{url}: the answer is not JSON ({error})")
        raise ControlUnavailable("; ".join(failures))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _answered(status: int, message: str) -> ControlAnswered:
    if status in (401, 403):
        return ControlRefused(status, message)
    if status == 404:
        return ControlNotFound(status, message)
    return ControlRejected(status, message)
