"""Shipping log lines to the control plane: a bounded buffer and one POST at a time.

Routers (their `heroku[router]` lines) and dyno managers (dyno output and the platform's lines
about dynos) send their lines to the control plane in batches, `POST /logs` with their token
(docs/logs.md has the wire shape):

    @hello
    2026-11-26T12:00:00.123456+00:00 heroku[router]: at=info method=GET path="/" …
    2026-11-26T12:00:00.125011+00:00 app[web.1]: listening on 20345

A line `@<app>` names the app of the log lines after it. Shipping never slows a request or a
dyno: lines go into a `ShipBuffer` bounded in bytes and a `LogShipper` task posts what it holds,
one request at a time. While the control plane is slow or away the buffer fills; past its
bound new lines are dropped and counted per app, and once the control plane takes lines again
each app that lost some gets Heroku's line for it:

    2026-11-26T12:00:09.000001+00:00 heroku[logs]: Error L10 (output buffer overflow): 37 messages dropped since 2026-11-26T12:00:01.500000+00:00.

This module is shared the way feedclient.py is: the transport is the same on both sides, and
what a line says belongs to each component. `ShipBuffer` is a plain object, tested without
sockets.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from dynomesh import logline
from dynomesh.backoff import BackoffPolicy
from dynomesh.feedclient import RECONNECT_BACKOFF, api_error_message, describe_error
from dynomesh.tasks import cancel_and_wait

LOGS_PATH = "/logs"
CONTENT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class ShipSettings:
    # Bytes of lines held while the control plane is slow or away; beyond this new lines are
    # dropped and counted (Heroku's L10). 8 MiB is about 30 000 router lines.
    buffer_bytes: int = 8 * 1024 * 1024
    # One POST carries at most about this much (the control plane takes bodies of 4 MiB).
    batch_bytes: int = 1024 * 1024
    # Posts start at least this far apart: a trickle of lines goes out at once, a flood
    # gathers into fewer, larger posts.
    min_interval: float = 0.05
    # Between failed attempts, as for the feeds: 0.1 s doubling to 5 s, with jitter.
    backoff: BackoffPolicy = RECONNECT_BACKOFF
    # A POST that has no answer after this long failed; its lines are sent again.
    timeout: float = 10.0
    # At shutdown, what is still held gets this long to reach the control plane.
    close_timeout: float = 2.0

    def __post_init__(self) -> None:
        if self.buffer_bytes < 4096:
            raise ValueError("the log shipping buffer must hold at least 4096 bytes")
        if self.batch_bytes < 1024:
            raise ValueError("a log shipping batch must allow at least 1024 bytes")
        if self.min_interval < 0:
            raise ValueError("log shipping min interval must not be negative")
        for name in ("timeout", "close_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"log shipping {name.replace('_', ' ')} must be above 0 s")


def section(app: str, lines: Iterable[bytes]) -> bytes:
    """One app's lines (each without its newline) in the wire shape."""
    return b"@" + app.encode() + b"\n" + b"\n".join(lines) + b"\n"


def overflow_line(count: int, since: float, at: float) -> bytes:
    """Heroku's L10 line: lines of this app were dropped before reaching the control plane."""
    return (f"{logline.rfc5424_timestamp(at)} heroku[logs]: Error L10 (output buffer "
            f"overflow): {count} messages dropped since {logline.rfc5424_timestamp(since)}."
            ).encode()


class _Drops:
    __slots__ = ("count", "since")

    def __init__(self, count: int, since: float) -> None:
        self.count = count
        self.since = since


class ShipBuffer:
    """Encoded sections waiting to be posted, bounded in bytes, with per-app drop counts.

    One batch at a time is in flight: `take()` hands out the oldest sections (they stay
    counted against the bound), then `sent()`, `failed()` (they are taken again next time) or
    `refused()` (the control plane will never take them) settles it. Drops are reported as L10
    lines in the next batch; if that batch fails, its counts go back and grow meanwhile.
    """

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._clock = clock
        self._chunks: deque[tuple[bytes, int]] = deque()  # (sections, line count)
        self.size = 0  # bytes held, the batch in flight included
        self._drops: dict[str, _Drops] = {}
        self._reporting: dict[str, _Drops] = {}  # drop counts carried by the batch in flight
        self._in_flight = 0  # chunks taken and not settled
        self._in_flight_lines = 0
        # Totals, for metrics.
        self.shipped = 0
        self.dropped = 0
        self.refused_lines = 0

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def in_flight(self) -> bool:
        return bool(self._in_flight or self._reporting)

    @property
    def pending(self) -> bool:
        """Something to send: lines not in flight, or drops to report."""
        return len(self._chunks) > self._in_flight or bool(self._drops)

    def fits(self, size: int) -> bool:
        return self.size + size <= self.limit

    def add(self, chunk: bytes, lines: int) -> None:
        """Hold encoded sections (the caller checked `fits`)."""
        self._chunks.append((chunk, lines))
        self.size += len(chunk)

    def drop(self, app: str, count: int = 1) -> None:
        """`count` lines of `app` found the buffer full."""
        drops = self._drops.get(app)
        if drops is None:
            self._drops[app] = _Drops(count, self._clock())
        else:
            drops.count += count
        self.dropped += count

    def offer(self, app: str, line: bytes) -> bool:
        """One log line (without its newline): held, or dropped and counted."""
        chunk = b"@" + app.encode() + b"\n" + line + b"\n"
        if not self.fits(len(chunk)):
            self.drop(app)
            return False
        self._chunks.append((chunk, 1))
        self.size += len(chunk)
        return True

    def take(self, max_bytes: int) -> bytes | None:
        """The next batch: drop notices first, then the oldest sections up to `max_bytes` (at
        least one). None when there is nothing to send. One batch at a time."""
        if self.in_flight:
            raise RuntimeError("a batch is already in flight")
        parts: list[bytes] = []
        if self._drops:
            now = self._clock()
            self._reporting, self._drops = self._drops, {}
            parts = [section(app, [overflow_line(d.count, d.since, now)])
                     for app, d in self._reporting.items()]
        size = sum(map(len, parts))
        for chunk, lines in self._chunks:
            if self._in_flight and size + len(chunk) > max_bytes:
                break
            parts.append(chunk)
            size += len(chunk)
            self._in_flight += 1
            self._in_flight_lines += lines
        return b"".join(parts) if parts else None

    def sent(self) -> int:
        """The batch in flight arrived; -> how many lines it carried (notices not counted)."""
        lines = self._in_flight_lines
        self._release()
        self._reporting = {}
        self.shipped += lines
        return lines

    def failed(self) -> None:
        """The batch in flight did not arrive: its lines are taken again, its drop counts
        go back (merged with drops since)."""
        self._in_flight = self._in_flight_lines = 0
        for app, drops in self._reporting.items():
            newer = self._drops.get(app)
            if newer is not None:
                drops.count += newer.count
            self._drops[app] = drops
        self._reporting = {}

    def refused(self) -> int:
        """The control plane refused the batch as such (it will never take it): forget it;
        -> how many lines were lost."""
        lines = self._in_flight_lines
        self._release()
        self._reporting = {}
        self.refused_lines += lines
        return lines

    def _release(self) -> None:
        for _ in range(self._in_flight):
            chunk, _lines = self._chunks.popleft()
            self.size -= len(chunk)
        self._in_flight = self._in_flight_lines = 0


class ShipFigures(NamedTuple):
    """A shipper's state at one moment: what /metrics shows."""

    shipped: int  # lines the control plane took
    dropped: int  # lines dropped because the buffer was full
    refused: int  # lines in batches the control plane refused as such
    failures: int  # POSTs that failed (each is tried again)
    buffered_bytes: int
    reachable: int  # 1 while the last POST reached the control plane

    @classmethod
    def merge(cls, every: list[ShipFigures]) -> ShipFigures:
        """Several processes of one node (router workers): sums, reachable when all are."""
        return cls(*(sum(f[i] for f in every) for i in range(5)),
                   min((f.reachable for f in every), default=1))


class ShipCollector:
    """A shipper's figures as Prometheus metrics (`<prefix>_log_ship_*`), read at scrape."""

    def __init__(self, prefix: str, figures: Callable[[], ShipFigures]) -> None:
        self._prefix = prefix
        self._figures = figures

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        f = self._figures()
        name = f"{self._prefix}_log_ship"
        yield CounterMetricFamily(f"{name}_lines_shipped", "Log lines the control plane took",
                                  value=f.shipped)
        yield CounterMetricFamily(f"{name}_lines_dropped", "Log lines dropped because the "
                                  "shipping buffer was full (reported as L10 lines)",
                                  value=f.dropped)
        yield CounterMetricFamily(f"{name}_lines_refused", "Log lines in batches the control "
                                  "plane refused", value=f.refused)
        yield CounterMetricFamily(f"{name}_failures", "Log shipping requests that failed "
                                  "(their lines are sent again)", value=f.failures)
        yield GaugeMetricFamily(f"{name}_buffered_bytes", "Bytes of log lines waiting to be "
                                "shipped", value=f.buffered_bytes)
        yield GaugeMetricFamily(f"{name}_reachable", "1 while the control plane takes log "
                                "lines", value=f.reachable)


class _Failed(Exception):
    """A POST that did not arrive; its lines are sent again."""


class _Refused(Exception):
    """The control plane refused a batch as such; sending it again cannot help."""


class LogShipper:
    """Posts what a `ShipBuffer` holds to the control plane, one request at a time.

    Runs as one task on the component's loop. Callers add lines with `offer`/`offer_sections`
    (never blocking, never raising), and the shipper wakes. A failed POST (unreachable, 5xx,
    401/403, a timeout) is tried again with back-off, moving on to the next control URL; the
    lines stay held meanwhile. A batch refused as such (another 4xx) is dropped and said.
    """

    def __init__(self, urls: tuple[str, ...], token: str, settings: ShipSettings | None = None,
                 *, say: Callable[[str], None] = lambda message: None,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time) -> None:
        if not urls:
            raise ValueError("log shipping needs at least one control plane URL")
        if not token:
            raise ValueError("log shipping needs a token")
        self.urls = urls
        self._token = token
        self.settings = settings or ShipSettings()
        self.buffer = ShipBuffer(self.settings.buffer_bytes, wallclock)
        self._say = say
        self._rng = rng or random.Random()
        self._clock = clock
        self._preferred = 0
        self._ready: asyncio.Event | None = None
        self._last_post = float("-inf")  # clock() when the last POST started
        self._task: asyncio.Task[None] | None = None
        self._session = None
        self.failures = 0
        self.reachable = True
        self._away_since: float | None = None
        self._last_complaint = float("-inf")
        self._dropped_before = 0  # buffer.dropped when the control plane last took lines

    # -- adding lines (the component's side; never blocks) ------------------------------------

    def offer(self, app: str, line: bytes) -> None:
        """One log line of `app`, without its newline."""
        self.buffer.offer(app, line)
        if self._ready is not None:
            self._ready.set()

    def offer_sections(self, chunk: bytes, lines: int, counts: Callable[[], Iterable[
            tuple[str, int]]]) -> None:
        """Encoded sections holding `lines` lines; `counts()` says how many lines of which app
        they hold, asked only when they must be dropped."""
        buffer = self.buffer
        if buffer.fits(len(chunk)):
            buffer.add(chunk, lines)
        else:
            for app, count in counts():
                buffer.drop(app, count)
        if self._ready is not None:
            self._ready.set()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._ready = asyncio.Event()
        if self.buffer.pending:
            self._ready.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="log shipper")

    async def aclose(self) -> None:
        """Stop; what is still held gets `close_timeout` to reach the control plane."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if self.buffer.pending and self.settings.close_timeout > 0:
            try:
                async with asyncio.timeout(self.settings.close_timeout):
                    await self._drain_once()
            except (TimeoutError, _Failed) as error:
                if self.buffer.in_flight:
                    self.buffer.failed()  # cut short by the timeout
                self._say(f"log shipping: {len(self.buffer)} batches of log lines not shipped "
                          f"at shutdown ({error or 'timed out'})")
        if self._session is not None:
            await self._session.close()
            self._session = None

    def figures(self) -> ShipFigures:
        buffer = self.buffer
        return ShipFigures(buffer.shipped, buffer.dropped, buffer.refused_lines, self.failures,
                           buffer.size, int(self.reachable))

    # -- sending ------------------------------------------------------------------------------

    def _open_session(self):
        import aiohttp  # imported here so that `--help` of the commands stays fast

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                headers={"Authorization": f"Bearer {self._token}",
                         "Content-Type": CONTENT_TYPE})
        return self._session

    async def _run(self) -> None:
        backoff = self.settings.backoff.start(self._rng)
        while True:
            await self._ready.wait()
            gap = self._last_post + self.settings.min_interval - self._clock()
            if gap > 0:
                await asyncio.sleep(gap)  # lines gather meanwhile
            try:
                await self._drain_once()
            except _Failed:
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            if not self.buffer.pending:
                self._ready.clear()

    async def _drain_once(self) -> None:
        """Post batches until nothing is left; raises `_Failed` at the first failure."""
        while (body := self.buffer.take(self.settings.batch_bytes)) is not None:
            try:
                await self._post(body)
            except (_Failed, asyncio.CancelledError):
                # Cancelled mid-post (the shipper is closing): the lines count as not sent, so
                # the final drain takes them again; the control plane may see them twice.
                self.buffer.failed()
                raise
            except _Refused as error:
                lost = self.buffer.refused()
                self._say(f"log shipping: the control plane refused a batch of {lost} lines "
                          f"({error}); they are dropped")
                continue
            self.buffer.sent()
            self._back()

    async def _post(self, body: bytes) -> None:
        import aiohttp

        session = self._open_session()
        url = self.urls[self._preferred]
        self._last_post = self._clock()
        try:
            async with session.post(url + LOGS_PATH, data=body) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            self._lost(url, describe_error(error))
            raise _Failed(describe_error(error)) from error
        if status < 300:
            return
        message = api_error_message(text)
        if status in (401, 403):
            self._lost(url, f"HTTP {status}: {message} — the token is not accepted: give a "
                            "valid router or dynomgr token")
            raise _Failed(f"HTTP {status}")
        if status >= 500 or status in (408, 429):
            self._lost(url, f"HTTP {status}: {message}")
            raise _Failed(f"HTTP {status}")
        raise _Refused(f"HTTP {status}: {message}")

    # -- reachability, said once -----------------------------------------------------------------

    def _lost(self, url: str, reason: str) -> None:
        self.failures += 1
        self._preferred = (self._preferred + 1) % len(self.urls)
        now = self._clock()
        if self.reachable:
            self.reachable = False
            self._away_since = now
            self._last_complaint = now
            self._say(f"log shipping: cannot ship to {url} ({reason}); holding up to "
                      f"{self.buffer.limit} bytes of lines, then dropping and counting them")
        elif now - self._last_complaint >= 60:
            self._last_complaint = now
            self._say(f"log shipping: still cannot ship ({reason}); "
                      f"{self.buffer.dropped - self._dropped_before} lines dropped so far")

    def _back(self) -> None:
        dropped = self.buffer.dropped - self._dropped_before
        self._dropped_before = self.buffer.dropped
        if self.reachable:
            return
        self.reachable = True
        away = self._clock() - (self._away_since or self._clock())
        self._say(f"log shipping: shipping to {self.urls[self._preferred]} again after "
                  f"{away:.1f} s ({dropped} lines dropped meanwhile, reported in the apps' logs)")
