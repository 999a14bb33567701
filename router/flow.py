"""Back-pressure: pausing a transport's reading for one or more independent reasons.

A client connection's reading is paused while its dyno connection's write buffer is full, while
a dyno connection is being set up, while an earlier pipelined request is being answered, and
while an upgrade request waits for the dyno's answer; each of those ends on its own. A bit per reason means the last one to end resumes reading, and
no reason can resume what another still holds.
"""

from __future__ import annotations

import asyncio
import enum


class PauseReason(enum.IntFlag):
    PEER_BUFFER_FULL = 1  # the other side's write buffer is above its high-water mark
    AWAITING_DYNO = 2  # the request waits for a dyno connection (connect, boot queue)
    PIPELINED = 4  # an earlier request on this connection is still being answered
    UPGRADING = 8  # an upgrade request waits for the dyno's answer (tunnel or plain HTTP)


# Plain ints for the request path (IntFlag arithmetic allocates).
PEER_BUFFER_FULL = int(PauseReason.PEER_BUFFER_FULL)
AWAITING_DYNO = int(PauseReason.AWAITING_DYNO)
PIPELINED = int(PauseReason.PIPELINED)
UPGRADING = int(PauseReason.UPGRADING)


class ReadGate:
    __slots__ = ("transport", "reasons")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reasons = 0

    def pause(self, reason: int) -> None:
        if not self.reasons and not self.transport.is_closing():
            self.transport.pause_reading()
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        if self.reasons & reason:
            self.reasons &= ~reason
            if not self.reasons and not self.transport.is_closing():
                self.transport.resume_reading()
