"""Test clients of the log stream: post lines as a router or dyno manager would, and tail.

    await post(api.url, token, "hello", [line(0, "heroku", "router", "at=info")])
    tail = await Tail.open(api.url, user_token, "hello", lines=0)
    await tail.until(lambda t: len(t.lines) == 3)

A tail reads in the background and keeps every line it got, so tests wait for what they
expect to arrive (with a bound), never for time.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from dynomesh import logline

TAIL_TIMEOUT = 20.0  # generous: two shared cores under a parallel test load
BASE = 1_795_000_000.0


def line(offset: float, source: str, process: str, text: str) -> str:
    """A wire line stamped `offset` seconds after a fixed moment."""
    return f"{logline.rfc5424_timestamp(BASE + offset)} {source}[{process}]: {text}"


def body(app: str, lines: list[str]) -> bytes:
    return ("@" + app + "\n" + "".join(f"{text}\n" for text in lines)).encode()


async def post(url: str, token: str, app: str, lines: list[str], *,
               raw: bytes | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/logs", data=raw if raw is not None else body(app, lines),
                                headers={"Authorization": f"Bearer {token}",
                                         "Content-Type": "text/plain"}) as response:
            return response.status, await response.json()


async def fetch(url: str, token: str, app: str, *, ndjson: bool = False,
                **query) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if ndjson:
        headers["Accept"] = "application/x-ndjson"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/apps/{app}/log", params={k: str(v) for k, v in
                                                                 query.items()},
                               headers=headers) as response:
            return response.status, await response.text()


async def texts(url: str, token: str, app: str, **query) -> list[str]:
    """The text part of each line `GET /apps/{app}/log` shows."""
    status, text = await fetch(url, token, app, **query)
    assert status == 200, text
    return [shown.split(": ", 1)[1] for shown in text.splitlines()]


class Tail:
    """`GET /apps/{app}/log?tail=true` as ndjson, read in the background."""

    def __init__(self, session: aiohttp.ClientSession, response: aiohttp.ClientResponse) -> None:
        self._session = session
        self.response = response
        self.lines: list[dict] = []  # line objects, in arrival order
        self.others: list[dict] = []  # heartbeats, a cut notice
        self.arrived: list[float] = []  # time.monotonic() of each line
        self.ended = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str, app: str, **query) -> "Tail":
        session = aiohttp.ClientSession()
        params = {"tail": "true", **{k: str(v) for k, v in query.items()}}
        response = await session.get(
            f"{url}/apps/{app}/log", params=params,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/x-ndjson"},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        if response.status != 200:
            text = await response.text()
            await session.close()
            raise AssertionError(f"tail: {response.status} {text}")
        return cls(session, response)

    async def _read(self) -> None:
        try:
            while raw := await self.response.content.readline():
                message = json.loads(raw)
                async with self._changed:
                    if message["type"] == "line":
                        self.lines.append(message)
                        self.arrived.append(time.monotonic())
                    else:
                        self.others.append(message)
                    self._changed.notify_all()
        except aiohttp.ClientError:
            pass  # the connection broke: `ended` says so
        async with self._changed:
            self.ended = True
            self._changed.notify_all()

    def texts(self) -> list[str]:
        return [message["text"] for message in self.lines]

    async def until(self, predicate, timeout: float = TAIL_TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

    async def close(self) -> None:
        self._reader.cancel()
        self.response.close()
        await self._session.close()
