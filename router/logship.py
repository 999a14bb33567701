"""The router's lines to the control plane: one more sink of the `BufferedLogWriter`.

The request path does not change: each exchange appends its formatted line to the writer's
pending list, as it does for stdout. At flush time (every quarter second, or every 512 lines)
`ControlLogSink.write_lines` gets the same batch the stdout sink gets, groups its lines by app
(a dict append per line), and hands the encoded sections to the shared `LogShipper`
(logship.py), which posts them from its own task. Lines of requests that matched no app (an
unknown host) have no app log to go to and are not shipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynomesh.logship import LogShipper, ShipSettings


def ship_settings(buffer_bytes: int = ShipSettings.buffer_bytes) -> ShipSettings:
    # Under load the writer flushes every 512 lines; at most five posts a second let one post
    # carry several flushes then, while a quiet router's lines still go out at once.
    return ShipSettings(buffer_bytes=buffer_bytes, min_interval=0.2)


@dataclass(frozen=True)
class LogShipConfig:
    """`--log-ship URL[,URL]` (by default the `--control` URLs) and the token file."""

    urls: tuple[str, ...]
    token: str
    settings: ShipSettings = field(default_factory=ship_settings)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("--log-ship: give at least one control plane URL")
        if not self.token:
            raise ValueError("--token-file: the token is empty")


class ControlLogSink:
    """A `LogSink` whose lines go to the control plane's log stream."""

    __slots__ = ("shipper", "_headers")

    def __init__(self, shipper: LogShipper) -> None:
        self.shipper = shipper
        self._headers: dict[str, bytes] = {}  # app -> b"@app\n"

    def write_lines(self, records: list[tuple[str | None, bytes]]) -> None:
        groups: dict[str | None, list[bytes]] = {}
        for app, line in records:
            lines = groups.get(app)
            if lines is None:
                lines = groups[app] = []
            lines.append(line)
        groups.pop(None, None)
        if not groups:
            return
        parts: list[bytes] = []
        count = 0
        headers = self._headers
        for app, lines in groups.items():
            header = headers.get(app)
            if header is None:
                if len(headers) >= 10_000:
                    headers.clear()  # bounded: app names come and go
                header = headers[app] = b"@" + app.encode() + b"\n"
            parts.append(header)
            parts.append(b"\n".join(lines))
            parts.append(b"\n")
            count += len(lines)
        self.shipper.offer_sections(b"".join(parts), count,
                                    lambda: [(app, len(lines)) for app, lines in groups.items()])
