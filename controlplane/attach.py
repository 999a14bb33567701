"""Attached one-off dynos: where a caller's session and its dyno's meet, and the relay between.

`dynomesh run` opens a WebSocket to the control node that created its dyno (the node's URL is
in the dyno's spec, so with several nodes both ends come to the same one); the dyno manager
that runs the dyno dials the same node, as it dials the control plane for everything else
(so it works from behind NAT, and needs no port of its own open). The node pairs the two by
dyno id, tells both `{"op": "attached"}`, and then copies every frame from one to the other
unchanged: the relay does not read the stream (docs/attach.md has the frames). Either end
closing closes the other: a CLI that goes away ends its dyno, as on Heroku.

Bounds: each side waits for the other at most its own time (the caller long enough for a
placement and a slug download, the dyno manager briefly: its caller was there first); frames
a caller sends before its dyno arrives are held up to `MAX_EARLY_BYTES`.
"""

from __future__ import annotations

import asyncio
import enum
import json
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from dynomesh.tasks import cancel_and_wait

MAX_EARLY_BYTES = 1024 * 1024
ATTACHED = json.dumps({"op": "attached"})


class Side(enum.Enum):
    CALLER = "caller"  # the `dynomesh run` CLI
    DYNO = "dyno"      # the dyno manager running the dyno


class AttachRefused(Exception):
    """The session cannot be joined (that side is already attached)."""


@dataclass
class _Meeting:
    arrived: dict[Side, asyncio.Future[web.WebSocketResponse]] = field(default_factory=dict)

    def future(self, side: Side) -> asyncio.Future[web.WebSocketResponse]:
        if side not in self.arrived:
            self.arrived[side] = asyncio.get_running_loop().create_future()
        return self.arrived[side]


def _other(side: Side) -> Side:
    return Side.DYNO if side is Side.CALLER else Side.CALLER


class Rendezvous:
    """This node's one-off sessions waiting for their other end, by dyno id."""

    def __init__(self) -> None:
        self._meetings: dict[str, _Meeting] = {}

    def waiting(self) -> int:
        return len(self._meetings)

    async def meet(self, dyno_id: str, side: Side, ws: web.WebSocketResponse,
                   timeout: float) -> web.WebSocketResponse | None:
        """Wait (up to `timeout`) for the other end of `dyno_id`'s session; None if it did
        not come. Raises AttachRefused when `side` is already there."""
        meeting = self._meetings.setdefault(dyno_id, _Meeting())
        mine = meeting.future(side)
        if mine.done():
            raise AttachRefused(f"the {side.value} end of this dyno's session is attached "
                                "already")
        mine.set_result(ws)
        theirs = meeting.future(_other(side))
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(theirs)
        except TimeoutError:
            return None
        finally:  # met, gave up or cancelled: nobody waits here any more
            if self._meetings.get(dyno_id) is meeting:
                del self._meetings[dyno_id]


async def early_frames(ws: web.WebSocketResponse, until: asyncio.Future) -> list | None:
    """Frames the caller sends until `until` resolves (held for the dyno); None if the caller
    closed first. Bounded by MAX_EARLY_BYTES (then reading pauses until the dyno comes)."""
    held: list = []
    size = 0
    while size < MAX_EARLY_BYTES:
        receive = asyncio.ensure_future(ws.receive())
        await asyncio.wait([receive, until], return_when=asyncio.FIRST_COMPLETED)
        if not receive.done():
            await cancel_and_wait(receive)
            return held
        message = receive.result()
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                            WSMsgType.ERROR):
            return None
        held.append(message)
        size += len(message.data) if isinstance(message.data, (bytes, str)) else 0
    await asyncio.shield(until)
    return held


async def forward(message, sink: web.WebSocketResponse) -> None:
    if message.type is WSMsgType.BINARY:
        await sink.send_bytes(message.data)
    elif message.type is WSMsgType.TEXT:
        await sink.send_str(message.data)


async def relay(source: web.WebSocketResponse, sink: web.WebSocketResponse) -> None:
    """Copy frames from `source` to `sink` until `source` closes; then close `sink`. Each
    send waits for the sink's transport to drain: a slow reader slows its writer."""
    try:
        async for message in source:
            if sink.closed:
                break
            await forward(message, sink)
    except ConnectionError:
        pass  # the sink's peer went away: closing it below is all there is to do
    finally:
        if not sink.closed:
            await sink.close()
