"""Reporters: where state changes and log lines go.

Standalone, the `StdoutReporter` prints Heroku-format lines, one per event, prefixed with the app:

    2026-11-26T12:00:00.123456+00:00 hello heroku[web.1]: State changed from starting to up (127.0.0.1:20345)
    2026-11-26T12:00:00.125011+00:00 hello app[web.1]: listening on 20345

Whoever reads stdout may be slow (a pager, a stalled pipe). A dyno must never wait for that, and
neither may the agent's event loop, so output goes through a `dynomesh.writer.NonBlockingWriter`
that holds up to a bound and then drops lines, counts them, and says how many once the reader
catches up (`drop_notice` words that line).
"""

from __future__ import annotations

from dynomesh import logline
from dynomesh.writer import NonBlockingWriter

from dynomgr.events import LogLine, StateChange


def drop_notice(count: int) -> str:
    return logline.line("dynomgr", "logs",
                        f"Dropped {count} log lines: the reader of this output was too slow")


class StdoutReporter:
    """Heroku's log format on a non-blocking writer; the reporter of a standalone agent."""

    def __init__(self, writer: NonBlockingWriter) -> None:
        self._writer = writer

    def state_changed(self, change: StateChange) -> None:
        ref = change.dyno
        self._writer.write_line(f"{logline.rfc5424_timestamp(change.at)} {ref.app} heroku[{ref.name}]: {change.message()}")

    def log(self, line: LogLine) -> None:
        ref = line.dyno
        self._writer.write_line(f"{logline.rfc5424_timestamp(line.at)} {ref.app} {line.source}[{ref.name}]: {line.text}")

    async def aclose(self) -> None:
        await self._writer.aclose()


class FanoutReporter:
    """Several reporters at once (stdout and the control plane)."""

    def __init__(self, *reporters) -> None:
        self._reporters = reporters

    def state_changed(self, change: StateChange) -> None:
        for reporter in self._reporters:
            reporter.state_changed(change)

    def log(self, line: LogLine) -> None:
        for reporter in self._reporters:
            reporter.log(line)

    async def aclose(self) -> None:
        for reporter in self._reporters:
            await reporter.aclose()
