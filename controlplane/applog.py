"""An app's log lines from the control plane: `Scale to web=3 by …`, `Preboot: switched to v8`.

Everything the control plane says into an app's log goes through `AppLog.write`, in Heroku's
format (`heroku[api]: …`). A control node writes each line twice (`TeeAppLog`): into the app's
log stream (`StreamAppLog`: stored with the routers' and dyno managers' lines, shown by
`dynomesh logs`), and to its own stdout (`StdoutAppLog`), prefixed with the app like the dyno
manager's own lines:

    2026-11-26T12:00:00.123456+00:00 hello heroku[api]: Scale to web=3 by operator
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from typing import TYPE_CHECKING, Protocol, TextIO

from dynomesh import logline

if TYPE_CHECKING:
    from controlplane.logs.ingest import LogIngest

log = logging.getLogger(__name__)


class AppLog(Protocol):
    def write(self, app: str, message: str, *, process: str = "api") -> None:
        """Add `heroku[process]: message` to `app`'s log. Never blocks, never raises."""

    def close(self) -> None:
        """Flush what was written and stop."""


class StdoutAppLog:
    """Lines to a text stream from a writer thread: a stalled reader never stalls the API.

    Up to `limit` lines wait for the reader; beyond that lines are dropped and counted, and the
    count is logged once the reader catches up.
    """

    def __init__(self, stream: TextIO | None = None, *, limit: int = 10_000) -> None:
        self._stream = stream or sys.stdout
        self._lines: queue.Queue[str | None] = queue.Queue(maxsize=limit)
        self._dropped = 0
        self._thread = threading.Thread(target=self._drain, name="applog", daemon=True)
        self._thread.start()

    def write(self, app: str, message: str, *, process: str = "api") -> None:
        line = f"{logline.rfc5424_timestamp()} {app} heroku[{process}]: {message}"
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            self._dropped += 1

    def _drain(self) -> None:
        broken = False
        while (line := self._lines.get()) is not None:
            try:
                if self._dropped:
                    dropped, self._dropped = self._dropped, 0
                    log.warning("applog: dropped %d app log lines (stdout was not read)",
                                dropped)
                if not broken:
                    self._stream.write(line + "\n")
                    self._stream.flush()
            except (OSError, ValueError) as exc:  # the reader went away, or the stream closed
                log.warning("applog: cannot write app log lines any more: %s", exc)
                broken = True  # keep taking lines so that writers and flush() never wait
            finally:
                self._lines.task_done()
        self._lines.task_done()

    def flush(self) -> None:
        """Block until every line written so far is out (a thread call, not for the loop)."""
        self._lines.join()

    def close(self) -> None:
        try:
            self._lines.put(None, timeout=1)
        except queue.Full:
            log.warning("applog: %d app log lines were not written at shutdown",
                        self._lines.qsize())
            return
        self._thread.join(timeout=5)


class StreamAppLog:
    """Lines into the app's log stream, queued for the next group commit (never waiting)."""

    def __init__(self, ingest: LogIngest) -> None:
        self._ingest = ingest

    def write(self, app: str, message: str, *, process: str = "api") -> None:
        from controlplane.store.logs import NewLine

        self._ingest.write_nowait(app, NewLine(logline.rfc5424_timestamp(), "heroku", process,
                                               message))

    def close(self) -> None:
        """The node flushes its log stream when it stops."""


class TeeAppLog:
    """The same lines to several app logs."""

    def __init__(self, *logs: AppLog) -> None:
        self._logs = logs

    def write(self, app: str, message: str, *, process: str = "api") -> None:
        for applog in self._logs:
            applog.write(app, message, process=process)

    def close(self) -> None:
        for applog in self._logs:
            applog.close()
