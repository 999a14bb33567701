"""One drain on the node that holds its lease: lines in from the hub, batches out to the receiver.

The log hub hands every new line of the app to the `DrainDelivery` exactly as it does to a
`dynomesh logs --tail` session (`deliver`, never blocking): the delivery puts the lines in its
`DrainBuffer` (bounded; past the bound lines are dropped and counted, and an L10 notice goes
where they are missing) and wakes its task. The task takes the oldest lines as one batch,
formats them once (syslog.py) and hands them to the transport; a failed batch is sent again,
unchanged, after a back-off (0.1 s doubling to 10 s, with jitter), so a dead receiver costs
one attempt now and then and nothing else: the app, the routers and the other drains never
wait for it.

The delivery skips the copy of its own L10 notices that comes back through the app's stream
(the service writes each notice there too, so that `dynomesh logs` shows it), and lines it
already has: `start(after)` and the history handed to `catch_up` say where it begins.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from dynomesh.backoff import BackoffPolicy
from controlplane.drains.buffer import BufferLimits, DrainBuffer
from controlplane.drains.syslog import frames
from controlplane.drains.transport import Batch, DeliveryFailed, Transport
from controlplane.logs.lines import Rendered
from controlplane.store.logs import LogEntry
from controlplane.store.models import Drain, DrainStats


@dataclass(frozen=True)
class DeliverySettings:
    buffer: BufferLimits = field(default_factory=BufferLimits)
    # Logplex posts batches of a few hundred messages; larger batches only add latency.
    batch_lines: int = 500
    batch_bytes: int = 1024 * 1024
    # Between failed attempts: 0.1 s doubling to 10 s, up to a fifth shaved off at random so
    # that the drains of a node that lost its network do not all come back at once.
    backoff: BackoffPolicy = BackoffPolicy(0.1, 10.0, jitter=0.2)
    # An attempt (connect, TLS, write, answer) that takes longer than this failed.
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.batch_lines < 1 or self.batch_bytes < 1024:
            raise ValueError("a drain batch holds at least 1 line and allows 1024 bytes")
        if not self.timeout > 0:
            raise ValueError("the drain delivery timeout must be above 0 s")


class DrainDelivery:
    def __init__(self, drain: Drain, transport: Transport, settings: DeliverySettings, *,
                 clock: Callable[[], float], on_notice: Callable[[LogEntry], None],
                 rng: random.Random | None = None,
                 attempted: asyncio.Event | None = None) -> None:
        self.drain = drain
        self.app_id = drain.app_id
        self._transport = transport
        self._settings = settings
        self._clock = clock
        self._on_notice = on_notice
        self._rng = rng or random.Random()
        self.buffer = DrainBuffer(settings.buffer, clock)
        self._wake = asyncio.Event()
        self._batch: Batch | None = None  # the batch being sent
        # From the hub before start(), at most a buffer's worth of lines (whole hub batches);
        # past that, batches are let go and counted at start(): `_early_newest` says how far.
        self._early: list[LogEntry] = []
        self._early_full = False
        self._early_newest = 0
        # Where it is: the hub's subscriber protocol (tail.py) and the lease's cursor.
        self.cut = False  # never: a drain is not cut off, it drops and counts
        self.after: int | None = None  # every line up to this seq was taken in
        # Every line up to this seq was sent or dropped (counted, reported by an L10): where
        # the next owner of the drain resumes.
        self.cursor = drain.cursor
        # Figures of this node's delivery (the lease's totals are added by the service).
        self.retries = 0
        # Set after every attempt, whatever came of it, for whoever watches (tests, benches).
        self.attempted = attempted or asyncio.Event()
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    @property
    def held(self) -> int:
        """Lines this delivery holds: its buffer's, and those kept before start()."""
        return len(self.buffer) + len(self._early)

    # -- lines in (the hub's side; never blocks) -------------------------------------------------

    def catch_up(self, entries: list[LogEntry]) -> None:
        """Lines stored after the drain's cursor and before it joined the hub, in seq order.
        Lines the store no longer keeps (the drain was away longer than its history) are
        reported where they are missing, as dropped (L10)."""
        self.after = self.cursor
        if entries and entries[0].seq > self.cursor + 1:
            self.buffer.lost(entries[0].seq - self.cursor - 1)
        self._take_in(entries)

    def start(self, after: int) -> None:
        """The hub's lines from now on come after `after`."""
        self.after = max(self.after or 0, after)
        early, self._early = self._early, []
        self._take_in(early)
        if self._early_full:
            # The batches let go came after those kept (the hub hands lines out in seq
            # order, and seqs are dense per app): the L10 goes where they are missing.
            self.buffer.lost(self._early_newest - self.after)
            self.after = max(self.after, self._early_newest)
            self._wake.set()

    def deliver(self, rendered: Rendered) -> None:
        if self.after is None:
            self._hold_early(rendered.entries)
            return
        self._take_in(rendered.entries)

    def _hold_early(self, entries: list[LogEntry]) -> None:
        """Lines before start() (the service is reading the drain's history), kept whole
        batch by whole batch up to the buffer's bound in lines."""
        if not entries:
            return
        self._early_newest = max(self._early_newest, max(e.seq for e in entries))
        if self._early_full or len(self._early) + len(entries) > self.buffer.limits.lines:
            self._early_full = True
            return
        self._early.extend(entries)

    def close(self) -> None:
        """The hub stops (the node is stopping); the service ends the task."""

    def _take_in(self, entries: list[LogEntry]) -> None:
        after = self.after
        newest = after
        own = self.drain.token
        offered = False
        for entry in entries:
            seq = entry.seq
            if seq <= after:
                continue
            if seq > newest:
                newest = seq
            if entry.process == "logs" and entry.source == "heroku" and own in entry.text:
                continue  # the stream's copy of this drain's own L10 notice
            self.buffer.offer(entry)
            offered = True
        self.after = newest
        if offered:
            self._wake.set()

    # -- batches out ------------------------------------------------------------------------

    def stats(self) -> DrainStats:
        """What this node's delivery did so far."""
        return DrainStats(self.buffer.sent, self.buffer.dropped, self.retries,
                          self.last_error, self.last_error_at)

    async def run(self) -> None:
        """Send for as long as the node holds the drain (the service cancels it)."""
        backoff = self._settings.backoff.start(self._rng)
        try:
            while True:
                if self._batch is None:
                    self._batch = await self._next_batch()
                batch = self._batch
                try:
                    await self._transport.send(batch)
                except DeliveryFailed as exc:
                    self.retries += 1
                    self.last_error = str(exc)
                    self.last_error_at = self._clock()
                    self.attempted.set()
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                self.buffer.delivered()
                self._advance_cursor()
                self._batch = None
                self.attempted.set()
        finally:
            await self._transport.aclose()

    def _advance_cursor(self) -> None:
        """Up to the line before the lowest one still held: a line of lower seq than one
        sent may still wait (lines leave in time order), and the next owner must send it."""
        held = self.buffer.lowest_seq()
        self.cursor = max(self.cursor, self.after if held is None else held - 1)

    async def _next_batch(self) -> Batch:
        settings = self._settings
        while True:
            entries = self.buffer.take(settings.batch_lines, settings.batch_bytes)
            for notice in self.buffer.take_notices():
                self._on_notice(notice)
            if entries:
                payload = frames(entries, self.drain.token)
                return Batch(payload, len(entries), secrets.token_hex(16))
            self._wake.clear()
            await self._wake.wait()
