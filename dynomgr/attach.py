"""The dyno manager's end of an attached one-off dyno's session (docs/attach.md).

The dyno manager dials the control node named in the dyno's assignment (a WebSocket, with its
own token) before it starts the process, and waits for `{"op": "attached"}`: its caller is
there, so no output is produced for nobody. Then binary frames carry the streams (first byte:
0 stdin from the caller, 1 stdout, 2 stderr to it) and text frames the rest: the caller's
`resize`, `signal` and `eof`, and at the end this side's `exit` with the command's status.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Union

import aiohttp

STDIN, STDOUT, STDERR = 0, 1, 2
# Signals a caller may send (Ctrl-C without a terminal, Ctrl-\\, a hang-up, a polite stop).
SIGNALS = {"INT": signal.SIGINT, "QUIT": signal.SIGQUIT, "HUP": signal.SIGHUP,
           "TERM": signal.SIGTERM}
# How long a dyno manager waits for the control node to pair it with its caller.
ATTACH_TIMEOUT = 90.0


class AttachFailed(Exception):
    """The session could not be joined; the message says why (it goes to the dyno's log)."""


@dataclass(frozen=True)
class Input:
    data: bytes


@dataclass(frozen=True)
class EndOfInput:
    pass


@dataclass(frozen=True)
class Resize:
    columns: int
    rows: int


@dataclass(frozen=True)
class Signal:
    signal: signal.Signals


Event = Union[Input, EndOfInput, Resize, Signal]


def decode_event(message: aiohttp.WSMessage) -> Event | None:
    """One frame from the caller as an event; None for a frame this side ignores."""
    if message.type is aiohttp.WSMsgType.BINARY:
        data = message.data
        return Input(bytes(data[1:])) if data[:1] == bytes([STDIN]) else None
    if message.type is not aiohttp.WSMsgType.TEXT:
        return None
    try:
        body = json.loads(message.data)
    except ValueError:
        return None
    op = body.get("op") if isinstance(body, dict) else None
    if op == "eof":
        return EndOfInput()
    if op == "resize":
        columns, rows = body.get("cols"), body.get("rows")
        if all(isinstance(v, int) and 0 < v < 65536 for v in (columns, rows)):
            return Resize(columns, rows)
    if op == "signal" and body.get("name") in SIGNALS:
        return Signal(SIGNALS[body["name"]])
    return None


def _control_frame(message: aiohttp.WSMessage) -> dict:
    """A text frame's JSON object; {} for anything else."""
    if message.type is not aiohttp.WSMsgType.TEXT:
        return {}
    try:
        body = json.loads(message.data)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class AttachSession:
    """One open session: send the dyno's output and its end, receive its caller's events."""

    def __init__(self, client: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self._client = client
        self._ws = ws
        self.closed = asyncio.Event()  # the caller (or the control node) went away

    @classmethod
    async def open(cls, url: str, headers: dict[str, str],
                   timeout: float = ATTACH_TIMEOUT) -> AttachSession:
        client = aiohttp.ClientSession(headers=headers)
        try:
            async with asyncio.timeout(timeout):
                ws = await client.ws_connect(url, heartbeat=30.0, max_msg_size=4 * 1024 * 1024)
                message = await ws.receive()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await client.close()
            raise AttachFailed(f"cannot join its session at {url}: {exc or type(exc).__name__}"
                               ) from exc
        except BaseException:
            await client.close()
            raise
        body = _control_frame(message)
        if body.get("op") != "attached":
            await ws.close()
            await client.close()
            why = body.get("message") or "the session closed"
            raise AttachFailed(f"its caller is not there: {why}")
        return cls(client, ws)

    async def events(self) -> AsyncIterator[Event]:
        """The caller's events until it goes away (then `closed` is set)."""
        try:
            async for message in self._ws:
                event = decode_event(message)
                if event is not None:
                    yield event
        finally:
            self.closed.set()

    async def send_output(self, channel: int, data: bytes) -> None:
        """Waits while the transport's buffer is full: a dyno writes as fast as its caller
        reads. Output for a caller that went away is dropped."""
        if self._ws.closed:
            return
        try:
            await self._ws.send_bytes(bytes([channel]) + data)
        except (ConnectionError, aiohttp.ClientError):
            self.closed.set()

    async def finish(self, status: int | None, reason: str | None) -> None:
        """Tell the caller how the command ended, and close."""
        if not self._ws.closed:
            try:
                await self._ws.send_str(json.dumps({"op": "exit", "status": status,
                                                    "reason": reason}))
                await self._ws.close()
            except (ConnectionError, aiohttp.ClientError):
                pass  # the caller is gone: there is nobody left to tell
        await self._client.close()
