"""One drain's delivery against real receivers on loopback: syslog over TCP and TLS, HTTPS;
exact bytes, Logplex's headers, a receiver that is away then back, one that never reads."""

from __future__ import annotations

import asyncio
import base64
import re
import time

import pytest

from controlplane.drains.buffer import BufferLimits
from controlplane.drains.delivery import DeliverySettings, DrainDelivery
from controlplane.drains.syslog import frames
from controlplane.drains.transport import transport_for
from controlplane.drains.urls import parse
from controlplane.logs.lines import Rendered
from controlplane.store.logs import LogEntry
from controlplane.store.models import Drain, DrainStats
from dynomesh import logline
from dynomesh.backoff import BackoffPolicy
from dynomesh.tasks import cancel_and_wait
from tests.drainreceivers import HttpsReceiver, NotHttpReceiver, SyslogReceiver, tls_pair

TOKEN = "d.9173ea1f-6f14-4976-9cf0-7cd0dafdcdbc"
BASE = 1_795_000_000.0
# Quick retries: a receiver that comes back is found within a fraction of a second.
QUICK = BackoffPolicy(0.02, 0.1)


def entry(seq: int, text: str = "", source: str = "app", process: str = "web.1") -> LogEntry:
    return LogEntry(seq, logline.rfc5424_timestamp(BASE + seq), source, process,
                    text or f"line {seq}")


def drain_for(url: str, cursor: int = 0) -> Drain:
    return Drain("id-1", "app-id", "hello", url, TOKEN, "2026-11-26T12:00:00Z", cursor,
                 "node-a", None, 1, DrainStats())


class Running:
    """A delivery and its task; `notices` are the L10 notices it made."""

    def __init__(self, url: str, context=None, *, lines: int = 10_000, timeout: float = 5.0,
                 batch_lines: int = 500) -> None:
        settings = DeliverySettings(BufferLimits(lines=lines), batch_lines=batch_lines,
                                    backoff=QUICK, timeout=timeout)
        self.notices: list[LogEntry] = []
        self.delivery = DrainDelivery(
            drain_for(url), transport_for(parse(url), TOKEN, context, timeout=timeout),
            settings, clock=time.time, on_notice=self.notices.append)
        self.delivery.catch_up([])
        self.delivery.start(0)
        self.task: asyncio.Task | None = None

    def run(self) -> "Running":
        self.task = asyncio.create_task(self.delivery.run())
        return self

    def offer(self, entries: list[LogEntry]) -> None:
        self.delivery.deliver(Rendered(entries))

    async def attempt(self) -> None:
        """Until the next attempt ends, whatever came of it."""
        self.delivery.attempted.clear()
        await asyncio.wait_for(self.delivery.attempted.wait(), 20)

    async def close(self) -> None:
        if self.task is not None:
            await cancel_and_wait(self.task)


@pytest.fixture
async def running():
    started: list[Running] = []

    def factory(*args, **kwargs) -> Running:
        started.append(Running(*args, **kwargs))
        return started[-1]

    yield factory
    for each in started:
        await each.close()


async def test_a_syslog_drain_gets_each_line_as_an_octet_counted_rfc5424_frame(running,
                                                                                 receivers):
    receiver = await receivers(SyslogReceiver)
    lines = [entry(1, "GET / 200"), entry(2, 'at=info method=GET path="/" status=200',
                                          source="heroku", process="router"),
             entry(3, "Release v2 created by ops", source="heroku", process="api"),
             entry(4, "héllo ✓")]
    drain = running(receiver.url).run()
    drain.offer(lines)
    await receiver.wait_for(4)
    stamp = [logline.rfc5424_timestamp(BASE + n) for n in range(1, 5)]
    msgs = [f"<190>1 {stamp[0]} {TOKEN} app web.1 - GET / 200\n",
            f'<158>1 {stamp[1]} {TOKEN} heroku router - at=info method=GET path="/" status=200\n',
            f"<134>1 {stamp[2]} {TOKEN} heroku api - Release v2 created by ops\n",
            f"<190>1 {stamp[3]} {TOKEN} app web.1 - héllo ✓\n"]
    assert receiver.raw == b"".join(b"%d %s" % (len(m.encode()), m.encode()) for m in msgs)
    while drain.delivery.stats().sent < 4:  # the receiver may read before the write returns
        await drain.attempt()
    assert drain.delivery.stats().sent == 4 and drain.delivery.cursor == 4


async def test_a_syslog_tls_drain_checks_the_receiver_and_sends_the_same_frames(running,
                                                                                receivers):
    server, client, _ = tls_pair()
    receiver = await receivers(SyslogReceiver, server)
    assert receiver.url.startswith("syslog+tls://")
    lines = [entry(n) for n in range(1, 1001)]
    drain = running(receiver.url, client).run()
    drain.offer(lines)
    await receiver.wait_for(1000)
    assert receiver.raw == frames(lines, TOKEN)
    while drain.delivery.stats().sent < 1000:  # the receiver may read before a write returns
        await drain.attempt()
    assert drain.delivery.retries == 0 and drain.delivery.cursor == 1000


async def test_a_tls_receiver_with_an_untrusted_certificate_is_not_sent_anything(running,
                                                                                 receivers):
    server, _, _ = tls_pair()
    _, other_client, _ = tls_pair()  # trusts another CA
    receiver = await receivers(SyslogReceiver, server)
    drain = running(receiver.url, other_client).run()
    drain.offer([entry(1)])
    await drain.attempt()
    assert "CERTIFICATE_VERIFY_FAILED" in drain.delivery.last_error
    assert receiver.raw == b"" and drain.delivery.stats().sent == 0


async def test_an_https_drain_posts_batches_with_logplex_headers(running, receivers):
    server, client, _ = tls_pair()
    receiver = await receivers(HttpsReceiver, server)
    url = receiver.url("user:s%3Acret@", "/ingest?key=abc")
    lines = [entry(n) for n in range(1, 8)]
    drain = running(url, client, batch_lines=3).run()
    drain.offer(lines)
    await receiver.wait_for(7)
    counts = [int(p.headers["Logplex-Msg-Count"]) for p in receiver.posts]
    assert counts == [3, 3, 1]
    assert b"".join(p.body for p in receiver.posts) == frames(lines, TOKEN)
    for post in receiver.posts:
        assert post.headers["Content-Type"] == "application/logplex-1"
        assert post.headers["Logplex-Drain-Token"] == TOKEN
        assert re.fullmatch(r"[0-9a-f]{32}", post.headers["Logplex-Frame-Id"])
        assert post.auth == "Basic " + base64.b64encode(b"user:s:cret").decode()
    assert len({p.headers["Logplex-Frame-Id"] for p in receiver.posts}) == 3


async def test_a_refused_post_is_sent_again_with_the_same_frame_id(running, receivers):
    server, client, _ = tls_pair()
    receiver = await receivers(HttpsReceiver, server)
    receiver.refuse = True
    drain = running(receiver.url(), client).run()
    drain.offer([entry(1), entry(2)])
    await drain.attempt()
    assert drain.delivery.last_error == "the receiver answered HTTP 503"
    receiver.refuse = False
    await receiver.wait_for(2)
    assert len(receiver.posts) == 1 and drain.delivery.retries >= 1


async def test_a_drain_that_was_down_gets_what_fitted_in_its_buffer_and_an_l10(running,
                                                                                receivers):
    receiver = await receivers(SyslogReceiver)
    await receiver.stop()  # away; its port is known
    drain = running(receiver.url, lines=5).run()
    drain.offer([entry(n) for n in range(1, 4)])
    await drain.attempt()
    assert "ConnectionRefusedError" in drain.delivery.last_error
    drain.offer([entry(n) for n in range(4, 13)])  # 2 more fit; 7 are dropped
    assert drain.delivery.stats().dropped == 7
    await receiver.start()  # back, on the same port
    await receiver.wait_for(6)
    texts = receiver.texts()
    assert texts[:5] == [f"line {n}" for n in range(1, 6)]
    assert re.fullmatch(r"Error L10 \(output buffer overflow\): 7 messages dropped since "
                        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00\.", texts[5]), texts[5]
    assert receiver.messages[5].startswith(b"<132>1 ")  # local0.warning
    assert f" {TOKEN} heroku logs - ".encode() in receiver.messages[5]
    assert [n.text for n in drain.notices] == [texts[5]]
    # Lines that come later follow the notice.
    drain.offer([entry(13)])
    await receiver.wait_for(7)
    assert receiver.texts()[6] == "line 13"


async def test_a_receiver_that_never_reads_costs_a_timeout_and_drops_not_a_wait(running,
                                                                                receivers):
    # Small kernel buffers: the stalled connection is full after a few lines, whatever the
    # kernel's own sizing.
    stalled = await receivers(SyslogReceiver, stalled=True, rcvbuf=4096)
    healthy = await receivers(SyslogReceiver)
    slow = running(stalled.url, lines=50, timeout=0.5).run()
    fast = running(healthy.url, lines=50).run()
    big = "x" * 8000
    for seq in range(1, 1001):
        line = [entry(seq, f"{seq} {big}")]
        slow.offer(line)  # returns at once however stuck the receiver is
        fast.offer(line)
        if seq % 25 == 0:
            await healthy.wait_for(seq)  # the healthy drain keeps up, line for line
    assert [t.split(" ", 1)[0] for t in healthy.texts()] == [str(n) for n in range(1, 1001)]
    assert fast.delivery.stats().dropped == 0 and fast.delivery.last_error is None
    while slow.delivery.last_error is None:  # until its attempt in progress times out
        await slow.attempt()
    assert "took nothing for 0.5 s" in slow.delivery.last_error
    assert slow.delivery.stats().dropped > 0


@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=pytest.mark.xfail(
    strict=True, reason="known: a TLS connection aborted after a failed attempt, its receiver "
                        "not reading, loses lines already counted as sent (see docs/drains.md)"))],
    ids=["syslog", "syslog+tls"])
async def test_every_line_counted_as_sent_reaches_the_receiver_when_the_delivery_stops(
        running, receivers, tls):
    server, client, _ = tls_pair()
    # A receiver that stops reading, with small kernel buffers: they are full at once.
    receiver = await receivers(SyslogReceiver, server if tls else None, stalled=True,
                               rcvbuf=4096)
    drain = running(receiver.url, client if tls else None, lines=1000, timeout=0.5,
                    batch_lines=1).run()
    big = "x" * 8000
    drain.offer([entry(seq, f"{seq} {big}") for seq in range(1, 1001)])
    while drain.delivery.last_error is None:  # until the kernel takes no more
        await drain.attempt()
    sent = drain.delivery.stats().sent
    assert 0 < sent < 1000 and drain.delivery.cursor == sent
    await drain.close()  # the delivery stops (a handover): its connections are closed
    receiver.resume()
    await receiver.wait_closed()
    got = {int(t.split(" ", 1)[0]) for t in receiver.texts()}
    assert set(range(1, sent + 1)) <= got


async def test_an_https_answer_that_never_ends_is_cut_off_and_the_batch_is_sent(running,
                                                                              receivers):
    server, client, _ = tls_pair()
    receiver = await receivers(HttpsReceiver, server)
    receiver.endless = True  # 200, then a body of 64 MiB and more that never ends
    drain = running(receiver.url(), client, timeout=2.0).run()
    drain.offer([entry(1), entry(2)])
    await drain.attempt()
    assert drain.delivery.last_error is None and drain.delivery.stats().sent == 2
    drain.offer([entry(3)])
    await drain.attempt()
    assert drain.delivery.stats().sent == 3 and len(receiver.posts) == 2


async def test_a_failed_https_post_names_the_receiver_not_its_key(running, receivers):
    server, client, _ = tls_pair()
    receiver = await receivers(NotHttpReceiver, server)
    # yarl writes %7E as ~: an error quoting its form of the URL escapes a search for ours.
    url = f"https://127.0.0.1:{receiver.port}/bulk/T0kenInThePath1234/in?key=s%7Ecret"
    drain = running(url, client).run()
    drain.offer([entry(1)])
    await drain.attempt()
    error = drain.delivery.last_error
    assert error.startswith(f"127.0.0.1:{receiver.port}: ClientResponseError"), error
    for secret in ("s~cret", "s%7Ecret", "T0kenInThePath1234"):
        assert secret not in error


async def test_a_drains_cursor_never_passes_a_line_still_waiting_to_be_sent(running,
                                                                           receivers):
    server, client, _ = tls_pair()
    receiver = await receivers(HttpsReceiver, server)
    receiver.hold = asyncio.Event()  # the answer to the second POST waits for it
    drain = running(receiver.url(), client, batch_lines=2).run()
    # One hub batch, in time order: lines 3 and 4 came from a machine whose clock is behind.
    behind = [LogEntry(seq, logline.rfc5424_timestamp(BASE - 10 + seq), "app", "web.2",
                       f"line {seq}") for seq in (3, 4)]
    drain.offer(behind + [entry(1), entry(2)])
    await receiver.wait_for(4)  # lines 3, 4 sent; lines 1, 2 posted, not answered yet
    assert receiver.texts() == ["line 3", "line 4", "line 1", "line 2"]
    assert drain.delivery.stats().sent == 2
    # Where a next owner would resume: lines 1 and 2 are not known to have arrived.
    assert drain.delivery.cursor == 0
    receiver.hold.set()
    while drain.delivery.stats().sent < 4:
        await drain.attempt()
    assert drain.delivery.cursor == 4
