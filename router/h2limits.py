"""What an HTTP/2 client may ask of the router before it is cut off: small pure policies.

`H2Limits` holds the SETTINGS the router advertises (RFC 9113 §6.5.2) and the bounds it keeps
beyond them. `ResetBudget` counts the streams a client cancels (RST_STREAM) or has refused, per
window of time: the "rapid reset" attack (CVE-2023-44487) opens streams and cancels them at
once, so that every request costs the server work while the client's concurrency limit never
binds; past the budget the connection ends with GOAWAY ENHANCE_YOUR_CALM, as nginx, Go and
h2o do. `HeaderBlockScanner` follows the frame headers of what a client sends and bounds a header
block spread over CONTINUATION frames: the `h2` library gathers up to 64 frames of one block
before it decodes any of it (up to 1 MiB at the default frame size) and checks the decoded
size only then, so a "CONTINUATION flood" is refused here at the advertised header list size.

The clock is injected (`now` arguments), so the policies are tested without time passing.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 9113 §4.1: a frame header is 9 bytes; §3.4: the client's connection preface.
FRAME_HEADER = 9
PREFACE_LENGTH = 24
_HEADERS, _CONTINUATION = 0x1, 0x9
_END_HEADERS = 0x4


@dataclass(frozen=True, slots=True)
class H2Limits:
    # SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused (REFUSED_STREAM). 100 is
    # what nginx, h2o and the RFC's recommended minimum (§6.5.2) use.
    max_concurrent_streams: int = 100
    # SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2: names, values and 32 bytes per field):
    # a larger request head ends the connection. 64 KiB covers the router's HTTP/1.1 limits'
    # worth of ordinary fields (nginx: 4 x 8 KiB buffers).
    max_header_list_size: int = 64 * 1024
    # SETTINGS_INITIAL_WINDOW_SIZE: how much of a request body a client may send on one
    # stream before the router has passed it on to the dyno (flow control, §5.2).
    stream_window: int = 64 * 1024
    # The connection's window (WINDOW_UPDATE on stream 0): what all of a connection's request
    # bodies may hold in the router at once.
    connection_window: int = 1024 * 1024
    # Streams a client may cancel or have refused per `reset_window` seconds.
    max_resets: int = 200
    reset_window: float = 10.0

    @property
    def hard_stream_ceiling(self) -> int:
        """Where the h2 library's own check (a connection error) lies: above the advertised
        limit, so that streams just over it are refused one by one (REFUSED_STREAM,
        RFC 9113 §5.1.2) and counted against the reset budget."""
        return 2 * self.max_concurrent_streams


class ResetBudget:
    """Cancelled or refused streams per fixed window of time."""

    __slots__ = ("limit", "window", "_start", "_count")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._start = float("-inf")
        self._count = 0

    def spend(self, now: float) -> bool:
        """One more stream cancelled or refused at `now`. -> False once the client went over
        its budget (the connection is to end)."""
        if now - self._start >= self.window:
            self._start = now
            self._count = 0
        self._count += 1
        return self._count <= self.limit


class HeaderBlockScanner:
    """Reads the frame headers of a client's byte stream (skipping payloads) and measures the
    header block in progress: a HEADERS frame without END_HEADERS and its CONTINUATIONs."""

    __slots__ = ("limit", "_skip", "_partial", "_block", "_in_block")

    def __init__(self, limit: int, preface: bool = True) -> None:
        self.limit = limit
        self._skip = PREFACE_LENGTH if preface else 0  # payload bytes still to pass over
        self._partial = b""  # the start of a frame header cut by the end of a read
        self._block = 0  # bytes of the header block in progress
        self._in_block = False

    def feed(self, data: bytes) -> bool:
        """-> False if the header block in progress has grown past the limit."""
        at, end = 0, len(data)
        while at < end:
            if self._skip:
                step = min(self._skip, end - at)
                self._skip -= step
                at += step
                continue
            need = FRAME_HEADER - len(self._partial)
            header = self._partial + data[at:at + need]
            at += need
            if len(header) < FRAME_HEADER:
                self._partial = header
                break
            self._partial = b""
            length = int.from_bytes(header[:3], "big")
            kind, flags = header[3], header[4]
            if kind == _HEADERS:
                self._block = length
                self._in_block = not flags & _END_HEADERS
            elif kind == _CONTINUATION:
                self._block += length
                self._in_block = not flags & _END_HEADERS
            if self._in_block and self._block > self.limit:
                return False
            self._skip = length
        return True
