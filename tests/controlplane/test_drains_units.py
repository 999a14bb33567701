"""Log drains' pure parts: URLs and their masking, RFC 5424 frames, the buffer's L10 policy,
the lease times (no I/O)."""

from __future__ import annotations

import pytest

from controlplane.drains.buffer import NOTICE_SEQ, BufferLimits, DrainBuffer, overflow_text
from controlplane.drains.delivery import DeliverySettings, DrainDelivery
from controlplane.drains.service import LeaseTimes
from controlplane.drains.syslog import frame, frames, message, priority
from controlplane.drains.transport import transport_for
from controlplane.drains.urls import BadDrainUrl, DrainKind, canonical, masked, parse
from controlplane.logs.lines import Rendered
from controlplane.store.logs import LogEntry
from controlplane.store.models import Drain, DrainStats
from tests.drainreceivers import parse_frames

pytestmark = pytest.mark.unit

AT = "2026-11-26T12:00:00.123456+00:00"


def entry(seq: int, text: str = "", source: str = "app", process: str = "web.1") -> LogEntry:
    return LogEntry(seq, AT, source, process, text or f"line {seq}")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- URLs ---

@pytest.mark.parametrize("url, kind, host, port", [
    ("syslog+tls://logs.example.com:6514", DrainKind.SYSLOG_TLS, "logs.example.com", 6514),
    ("syslog+tls://Logs.Example.com", DrainKind.SYSLOG_TLS, "logs.example.com", 6514),
    ("syslog://127.0.0.1:5140", DrainKind.SYSLOG, "127.0.0.1", 5140),
    ("syslog://localhost", DrainKind.SYSLOG, "localhost", 514),
    ("syslog://[::1]:601", DrainKind.SYSLOG, "::1", 601),
    ("https://u:p@logs.example.com/in?key=1", DrainKind.HTTPS, "logs.example.com", 443),
    ("https://logs.example.com:8443/", DrainKind.HTTPS, "logs.example.com", 8443),
])
def test_drain_urls_of_the_three_kinds_are_accepted(url, kind, host, port):
    target = parse(url)
    assert (target.kind, target.host, target.port, target.url) == (kind, host, port, url)


@pytest.mark.parametrize("url, says", [
    ("", "give the drain's URL"),
    ("http://logs.example.com/", "http:// drains are not supported"),
    ("udp://logs.example.com:514", "udp:// drains are not supported"),
    ("logs.example.com:514", "drains are not supported"),
    ("syslog://", "names no host"),
    ("syslog://logs.example.com:99999", "is not a valid URL"),
    ("syslog://user:pw@logs.example.com:514", "takes no user or password"),
    ("syslog://logs.example.com:514/path", "HOST:PORT only"),
    ("https://bad_host.example.com/", "not a valid host name"),
    ("https://logs.example.com/a b", "no spaces"),
    ("https://logs.example.com/" + "a" * 3000, "at most 2048 characters"),
])
def test_a_url_that_cannot_be_a_drain_is_refused_saying_why(url, says):
    with pytest.raises(BadDrainUrl, match=says):
        parse(url)


def test_a_refusal_never_repeats_the_password():
    with pytest.raises(BadDrainUrl) as refused:
        parse("https://user:hunter2@bad_host/")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("url, shown", [
    ("https://user:hunter2@logs.example.com/in", "https://user:****@logs.example.com/in"),
    ("https://abc123token@logs.example.com/", "https://****@logs.example.com/"),
    ("https://logs.example.com/in?dd-api-key=abc&tag=x",
     "https://logs.example.com/in?dd-api-key=****&tag=****"),
    ("syslog+tls://logs.example.com:6514", "syslog+tls://logs.example.com:6514"),
    # Keys in the path: Loggly's /bulk/TOKEN/, Sumo Logic's /receiver/v1/http/CODE.
    ("https://logs-01.loggly.com/bulk/f3a1c2d4-1b2c-4d5e-8f90-123456789abc/tag/heroku/",
     "https://logs-01.loggly.com/bulk/****/tag/heroku/"),
    ("https://collectors.sumologic.com/receiver/v1/http/ZaVnC4dhaV2xYz9QwErTyUiOp0",
     "https://collectors.sumologic.com/receiver/v1/http/****"),
    ("https://logs.example.com/heroku-drain/v2/ingest",
     "https://logs.example.com/heroku-drain/v2/ingest"),
])
def test_credentials_in_a_url_are_masked(url, shown):
    assert masked(url) == shown


def test_a_drain_and_its_url_keep_the_url_out_of_their_repr():
    url = "https://user:hunter2@logs.example.com/in?key=K3ySecret"
    drain = Drain("id", "app-id", "hello", url, "d.1", "2026-11-26T12:00:00Z", 0, None,
                  None, 1, DrainStats())
    for shown in (repr(drain), repr(parse(url))):
        assert "hunter2" not in shown and "K3ySecret" not in shown


@pytest.mark.parametrize("one, other", [
    ("syslog://LOGS.example.com", "syslog://logs.example.com:514"),
    ("HTTPS://Logs.Example.com/in?key=1", "https://logs.example.com:443/in?key=1"),
    ("https://logs.example.com", "https://logs.example.com:443/"),
])
def test_one_receiver_spelled_two_ways_has_one_canonical_url(one, other):
    assert canonical(one) == canonical(other)


def test_urls_that_differ_where_it_matters_have_different_canonical_urls():
    assert canonical("https://logs.example.com/In") != canonical("https://logs.example.com/in")
    assert canonical("https://a:b@logs.example.com/") != canonical("https://logs.example.com/")


# --- RFC 5424 messages and RFC 6587 frames ---

def test_a_line_becomes_the_message_heroku_sends():
    token = "d.9173ea1f-6f14-4976-9cf0-7cd0dafdcdbc"  # HOSTNAME: the drain's token
    line = entry(7, "GET / 200")
    assert message(line, token) == (
        b"<190>1 2026-11-26T12:00:00.123456+00:00 d.9173ea1f-6f14-4976-9cf0-7cd0dafdcdbc app "
        b"web.1 - GET / 200\n")
    router = entry(8, 'at=info method=GET path="/"', source="heroku", process="router")
    assert message(router, token) == (
        b'<158>1 2026-11-26T12:00:00.123456+00:00 d.9173ea1f-6f14-4976-9cf0-7cd0dafdcdbc heroku '
        b'router - at=info method=GET path="/"\n')
    api = entry(9, "Release v2 created by ops", source="heroku", process="api")
    assert message(api, "hello").startswith(b"<134>1 ")


def test_priorities_follow_heroku_facilities():
    assert priority("app", "web.1") == 23 * 8 + 6  # local7.info
    assert priority("heroku", "router") == 19 * 8 + 6  # local3.info
    assert priority("heroku", "web.1") == 16 * 8 + 6  # local0.info
    assert priority("heroku", "logs", "Error L10 (output buffer overflow): 1 messages") \
        == 16 * 8 + 4  # local0.warning


def test_a_frame_counts_the_octets_of_the_message_newline_and_utf8_included():
    msg = message(entry(1, "héllo ✓"), "hello")
    assert frame(msg) == str(len(msg)).encode() + b" " + msg
    assert len(msg) == len(msg.decode()) + 1 + 2  # é is 2 bytes, ✓ is 3


def test_header_fields_never_hold_spaces_and_are_never_empty():
    odd = LogEntry(1, AT, "app", "", "text")
    assert b" app - - text\n" in message(odd, "hello")


def test_frames_parse_back_and_a_partial_frame_is_left_over():
    data = frames([entry(1), entry(2, "second")], "hello")
    got, rest = parse_frames(data + b"57 <190>1 partial")
    assert [m.split(b" - ", 1)[1] for m in got] == [b"line 1\n", b"second\n"]
    assert rest == b"57 <190>1 partial"
    with pytest.raises(ValueError, match="no octet count"):
        parse_frames(b"<190>1 not framed at all, no count in front of this message")


# --- the buffer and its overflow policy ---

def test_lines_leave_in_order_and_a_failed_batch_is_taken_again():
    buffer = DrainBuffer(BufferLimits(lines=10), Clock())
    for seq in range(1, 6):
        assert buffer.offer(entry(seq))
    batch = buffer.take(3, 1 << 20)
    assert [e.seq for e in batch] == [1, 2, 3]
    with pytest.raises(RuntimeError):
        buffer.take(3, 1 << 20)
    buffer.failed()
    assert [e.seq for e in buffer.take(10, 1 << 20)] == [1, 2, 3, 4, 5]
    buffer.delivered()
    assert buffer.sent == 5 and len(buffer) == 0 and buffer.size == 0
    assert buffer.take(10, 1 << 20) == [] and not buffer.pending


def test_a_full_buffer_drops_new_lines_and_puts_an_l10_where_they_are_missing():
    clock = Clock()
    buffer = DrainBuffer(BufferLimits(lines=4), clock)
    for seq in range(1, 5):
        assert buffer.offer(entry(seq))
    since = clock.now + 1  # the first drop
    for seq in range(5, 8):
        clock.now += 1
        assert not buffer.offer(entry(seq))
    assert buffer.dropped == 3
    assert [e.seq for e in buffer.take(2, 1 << 20)] == [1, 2]
    buffer.delivered()
    clock.now += 1
    # Room for the notice and a line beside it: the notice goes first, then the new line.
    assert buffer.offer(entry(8))
    batch = buffer.take(10, 1 << 20)
    assert [e.seq for e in batch] == [3, 4, NOTICE_SEQ, 8]
    notice = batch[2]
    assert (notice.source, notice.process) == ("heroku", "logs")
    assert notice.text == overflow_text(3, since) == (
        "Error L10 (output buffer overflow): 3 messages dropped since "
        "2027-01-15T08:00:01.000000+00:00.")
    assert buffer.take_notices() == [notice] and buffer.take_notices() == []
    buffer.delivered()
    assert buffer.sent == 5  # the notice is not a line of the stream


def test_the_notice_comes_once_the_receiver_took_lines_even_if_no_line_follows():
    buffer = DrainBuffer(BufferLimits(lines=2), Clock())
    buffer.offer(entry(1))
    buffer.offer(entry(2))
    buffer.offer(entry(3))
    buffer.take(10, 1 << 20)
    buffer.delivered()
    batch = buffer.take(10, 1 << 20)
    assert [e.seq for e in batch] == [NOTICE_SEQ]
    assert "1 messages dropped" in batch[0].text


def test_lines_are_dropped_while_the_notice_has_no_room_and_it_counts_them_all():
    buffer = DrainBuffer(BufferLimits(lines=3), Clock())
    for seq in range(1, 4):
        buffer.offer(entry(seq))
    buffer.offer(entry(4))  # dropped
    buffer.take(1, 1 << 20)
    buffer.delivered()  # room for one: not for the notice and a line
    assert not buffer.offer(entry(5))
    assert buffer.dropped == 2
    buffer.take(10, 1 << 20)
    buffer.delivered()
    assert buffer.offer(entry(6))
    batch = buffer.take(10, 1 << 20)
    assert [e.seq for e in batch] == [NOTICE_SEQ, 6]
    assert "2 messages dropped" in batch[0].text


def test_the_buffer_is_bounded_in_bytes_too():
    buffer = DrainBuffer(BufferLimits(lines=1000, bytes=2048), Clock())
    assert buffer.offer(entry(1, "x" * 1500))
    assert not buffer.offer(entry(2, "y" * 1000))
    assert buffer.dropped == 1
    batch = buffer.take(10, 1000)
    assert [e.seq for e in batch] == [1]  # a batch holds at least one line, however long


def test_buffer_limits_are_checked():
    with pytest.raises(ValueError, match="at least 2 lines"):
        BufferLimits(lines=1)


# --- leases and totals ---

def test_a_node_stops_delivering_a_renewal_interval_before_its_lease_ends():
    times = LeaseTimes(ttl=10.0, renew=3.0)
    assert times.stop_by(100.0) == 107.0
    with pytest.raises(ValueError, match="at least twice its renewal interval"):
        LeaseTimes(ttl=5.0, renew=3.0)


def test_totals_add_up_across_owners_and_keep_the_newest_error():
    before = DrainStats(10, 2, 1, "refused", 50.0)
    assert before.plus(DrainStats(5, 0, 0)) == DrainStats(15, 2, 1, "refused", 50.0)
    assert before.plus(DrainStats(1, 1, 1, "timed out", 60.0)) == \
        DrainStats(11, 3, 2, "timed out", 60.0)


def test_frames_of_many_lines_are_each_lines_frame():
    lines = [entry(1), entry(2, source="heroku", process="router"), entry(3),
             entry(4, "Error L10 (output buffer overflow): 2 messages dropped since x.",
                   source="heroku", process="logs"),
             entry(5, "Error R14 (Memory quota exceeded)", source="heroku", process="logs"),
             entry(6, "ünïcode")]
    assert frames(lines, "hello") == b"".join(frame(message(e, "hello")) for e in lines)


def test_the_lowest_seq_held_bounds_what_was_sent_whatever_the_order_lines_leave_in():
    buffer = DrainBuffer(BufferLimits(lines=10), Clock())
    for seq in (3, 4, 1, 2):  # time order, not seq order
        buffer.offer(entry(seq))
    assert buffer.lowest_seq() == 1
    buffer.take(2, 1 << 20)
    buffer.delivered()  # 3 and 4 sent
    assert buffer.lowest_seq() == 1
    buffer.take(2, 1 << 20)
    buffer.delivered()
    assert buffer.lowest_seq() is None


def test_a_dead_drains_dropped_lines_cost_a_count_and_the_notice_comes_with_room():
    buffer = DrainBuffer(BufferLimits(lines=2), Clock())
    buffer.offer(entry(1))
    buffer.offer(entry(2))
    for seq in range(3, 1003):
        assert not buffer.offer(entry(seq))
    assert buffer.dropped == 1000 and buffer.notices == []
    buffer.take(2, 1 << 20)
    buffer.delivered()  # room: the notice goes in at once, before any new line
    (notice,) = buffer.take_notices()
    assert notice.text.startswith("Error L10 (output buffer overflow): 1000 messages dropped")


def idle_delivery(cursor: int) -> DrainDelivery:
    """A drain's delivery whose task is not run: its transport never connects."""
    url = "syslog://127.0.0.1:5140"
    drain = Drain("id", "app-id", "hello", url, "d.1", "2026-11-26T12:00:00Z", cursor, None,
                  None, 1, DrainStats())
    return DrainDelivery(drain, transport_for(parse(url), "d.1", None, timeout=1.0),
                         DeliverySettings(BufferLimits(lines=10)), clock=Clock(),
                         on_notice=lambda notice: None)


def test_lines_handed_over_while_a_drain_starts_are_bounded_and_the_rest_reported():
    delivery = idle_delivery(cursor=0)
    # While the service reads lines 1-2 (the drain's history), the hub hands out 3-30.
    for first in range(3, 31, 4):
        delivery.deliver(Rendered([entry(seq) for seq in range(first, first + 4)]))
        assert delivery.held <= 10
    delivery.catch_up([entry(1), entry(2)])
    delivery.start(2)
    batch = delivery.buffer.take(100, 1 << 20)
    assert [e.seq for e in batch] == list(range(1, 11))
    assert delivery.buffer.dropped == 20
    delivery.buffer.delivered()
    delivery.deliver(Rendered([entry(31)]))
    batch = delivery.buffer.take(100, 1 << 20)
    assert [e.seq for e in batch] == [NOTICE_SEQ, 31]
    assert "20 messages dropped" in batch[0].text


def test_lines_pruned_before_a_drain_resumed_are_reported_where_they_are_missing():
    delivery = idle_delivery(cursor=100)
    delivery.catch_up([entry(seq) for seq in range(131, 134)])  # 101-130 are gone
    delivery.start(133)
    batch = delivery.buffer.take(100, 1 << 20)
    assert [e.seq for e in batch] == [NOTICE_SEQ, 131, 132, 133]
    assert batch[0].text.startswith("Error L10 (output buffer overflow): 30 messages dropped")
    assert delivery.buffer.dropped == 30
