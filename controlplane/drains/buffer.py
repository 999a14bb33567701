"""One drain's bounded buffer and its overflow policy (Heroku's L10), without I/O.

Every line of the app's stream is offered to each of its drains; a drain holds what it has not
sent yet here, bounded in lines and in bytes, so a slow or dead receiver costs the control
plane a fixed amount of memory and nobody any waiting. When the buffer is full, new lines are
dropped and counted. Once there is room again (the receiver took a batch), the next thing the
drain sends is Logplex's notice, right where the lines are missing:

    <timestamp> heroku[logs]: Error L10 (output buffer overflow): 37 messages dropped since <t>.

`take()` hands out the oldest lines as one batch, which stays counted against the bound until
`sent()` (gone) or `failed()` (taken again next time). Notices made are also kept in
`notices` for the delivery to copy into the app's log stream.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from dynomesh import logline
from controlplane.store.logs import LogEntry

# A notice made here has no place in the app's stored order.
NOTICE_SEQ = -1


def overflow_text(count: int, since: float) -> str:
    """Logplex's wording (logplex_syslog_utils overflow_msg)."""
    return (f"Error L10 (output buffer overflow): {count} messages dropped since "
            f"{logline.rfc5424_timestamp(since)}.")


@dataclass(frozen=True)
class BufferLimits:
    # About a minute of a busy app's router lines; Logplex keeps 1024 messages per drain.
    lines: int = 10_000
    # Dyno output lines may be 10 000 bytes: this bounds the memory whatever the lines are.
    bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.lines < 2:
            raise ValueError("a drain buffer holds at least 2 lines (a line and an L10 notice)")
        if self.bytes < 1024:
            raise ValueError("a drain buffer holds at least 1024 bytes")


class _Drops:
    __slots__ = ("count", "since")

    def __init__(self, since: float) -> None:
        self.count = 0
        self.since = since


class DrainBuffer:
    def __init__(self, limits: BufferLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._lines: deque[LogEntry] = deque()
        self.size = 0  # bytes of text held, the batch in flight included
        self._in_flight = 0  # lines at the front taken and not settled
        self._drops: _Drops | None = None
        self.notices: list[LogEntry] = []  # made since the delivery last looked
        # The seqs of the stream's lines held, as a heap; those sent are struck off lazily.
        self._seqs: list[int] = []
        self._sent_seqs: set[int] = set()
        # Totals, for metrics.
        self.sent = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def pending(self) -> bool:
        """Something to send that is not in flight: lines, or drops to report."""
        return len(self._lines) > self._in_flight or self._drops is not None

    def offer(self, entry: LogEntry) -> bool:
        """A new line of the stream: held, or dropped and counted. Never blocks, and costs
        a dead drain's ingest no more than a count: room appears only in `delivered()`,
        which puts the notice in then."""
        if self._drops is not None or not self._room(len(entry.text)):
            self._drop()
            return False
        self._lines.append(entry)
        self.size += len(entry.text)
        heapq.heappush(self._seqs, entry.seq)
        return True

    def lost(self, count: int) -> None:
        """`count` lines of the stream that never reached the buffer (they came while the
        delivery was starting, past its bound): dropped and reported like an overflow's."""
        if count <= 0:
            return
        if self._drops is None:
            self._drops = _Drops(self._clock())
        self._drops.count += count
        self.dropped += count
        self._notice_if_room()

    def _room(self, size: int, lines: int = 1) -> bool:
        return (len(self._lines) + lines <= self.limits.lines
                and self.size + size <= self.limits.bytes)

    def _drop(self) -> None:
        if self._drops is None:
            self._drops = _Drops(self._clock())
        self._drops.count += 1
        self.dropped += 1

    def _notice_if_room(self) -> None:
        """Put the L10 notice where the lines went missing, once it fits."""
        drops = self._drops
        text = overflow_text(drops.count, drops.since)
        # The notice needs its own room and, so that the first line after it is not dropped
        # again at once, the room of a line beside it.
        if not self._room(len(text) * 2, lines=2):
            return
        notice = LogEntry(NOTICE_SEQ, logline.rfc5424_timestamp(self._clock()), "heroku",
                          "logs", text)
        self._lines.append(notice)
        self.size += len(text)
        self.notices.append(notice)
        self._drops = None

    def take(self, max_lines: int, max_bytes: int) -> list[LogEntry]:
        """The oldest lines not in flight, up to the limits (at least one): the next batch.
        Empty when there is nothing to send. One batch at a time."""
        if self._in_flight:
            raise RuntimeError("a batch is already in flight")
        if self._drops is not None:
            self._notice_if_room()
        batch: list[LogEntry] = []
        size = 0
        for entry in self._lines:
            if batch and (len(batch) >= max_lines or size + len(entry.text) > max_bytes):
                break
            batch.append(entry)
            size += len(entry.text)
        self._in_flight = len(batch)
        return batch

    def delivered(self) -> None:
        """The batch in flight reached the receiver."""
        for _ in range(self._in_flight):
            entry = self._lines.popleft()
            self.size -= len(entry.text)
            if entry.seq != NOTICE_SEQ:
                self.sent += 1
                self._sent_seqs.add(entry.seq)
        self._in_flight = 0
        if self._drops is not None:
            self._notice_if_room()

    def lowest_seq(self) -> int | None:
        """The lowest seq among the stream's lines held (None: none). Lines leave in time
        order, which is not always seq order (one batch of the hub may mix machines whose
        clocks differ), so this, not the newest seq sent, bounds what was sent."""
        seqs, sent = self._seqs, self._sent_seqs
        while seqs and seqs[0] in sent:  # each seq is pushed once, so popped at most once
            sent.discard(heapq.heappop(seqs))
        return seqs[0] if seqs else None

    def failed(self) -> None:
        """The batch in flight did not arrive: it is taken again next time."""
        self._in_flight = 0

    def take_notices(self) -> list[LogEntry]:
        notices, self.notices = self.notices, []
        return notices
