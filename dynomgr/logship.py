"""Dyno output and the platform's lines about dynos, shipped to the control plane's log stream.

`LogShipReporter` is a `Reporter` beside the stdout one and the control-plane reporter. Each
event becomes one Heroku-format line in its app's log:

    2026-11-26T12:00:00.123456+00:00 heroku[web.1]: State changed from starting to up
    2026-11-26T12:00:00.125011+00:00 app[web.1]: listening on 20345
    2026-11-26T12:01:02.000000+00:00 heroku[web.1]: Error R14 (Memory quota exceeded)

and goes into the shared `LogShipper`'s bounded buffer (logship.py); a dyno never waits for the
control plane, and lines that do not fit while it is away are counted and reported as L10.
"""

from __future__ import annotations

from dynomesh import logline
from dynomesh.logship import LogShipper

from dynomgr.events import LogLine, StateChange


def state_line(change: StateChange) -> str:
    """Heroku's wording, without the address the stdout line adds for routers' sake."""
    return change.words()


def encode(at: float, source: str, process: str, text: str) -> bytes:
    # A line of the stream is one line: dyno output is already split at newlines, and a
    # platform message with one in it would forge a line of its own.
    if "\n" in text or "\r" in text:
        text = text.replace("\r", "\\r").replace("\n", "\\n")
    return f"{logline.rfc5424_timestamp(at)} {source}[{process}]: {text}".encode(
        "utf-8", "replace")


class LogShipReporter:
    def __init__(self, shipper: LogShipper) -> None:
        self.shipper = shipper

    def state_changed(self, change: StateChange) -> None:
        ref = change.dyno
        self.shipper.offer(ref.app, encode(change.at, "heroku", ref.name, state_line(change)))

    def log(self, line: LogLine) -> None:
        ref = line.dyno
        self.shipper.offer(ref.app, encode(line.at, line.source, ref.name, line.text))

    async def aclose(self) -> None:
        await self.shipper.aclose()
