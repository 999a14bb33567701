"""The HTTP/2 policies and conversions on their own: pure logic, no I/O."""

from __future__ import annotations

import pytest

from router.h2limits import H2Limits, HeaderBlockScanner, ResetBudget
from router.h2stream import request_fields, response_fields

pytestmark = pytest.mark.unit

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, payload: bytes, flags: int = 0, stream_id: int = 1) -> bytes:
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags])
            + stream_id.to_bytes(4, "big") + payload)


HEADERS, DATA, CONTINUATION, END_HEADERS = 1, 0, 9, 4


def test_the_reset_budget_is_per_window_of_time():
    budget = ResetBudget(limit=3, window=10.0)
    assert all(budget.spend(now) for now in (0.0, 1.0, 2.0))
    assert not budget.spend(3.0)  # a fourth within the window
    assert budget.spend(10.5)  # a new window


def test_the_hard_stream_ceiling_lies_above_the_advertised_limit():
    assert H2Limits(max_concurrent_streams=100).hard_stream_ceiling > 100


def test_a_header_block_within_the_limit_passes_whatever_the_reads():
    data = (PREFACE + frame(HEADERS, b"a" * 100) + frame(CONTINUATION, b"b" * 100)
            + frame(CONTINUATION, b"c" * 100, END_HEADERS) + frame(DATA, b"x" * 5000))
    for step in (1, 7, 9, 100, len(data)):
        scanner = HeaderBlockScanner(limit=300)
        assert all(scanner.feed(data[i:i + step]) for i in range(0, len(data), step))


def test_a_header_block_grown_by_continuations_past_the_limit_is_refused():
    scanner = HeaderBlockScanner(limit=1000)
    assert scanner.feed(PREFACE + frame(HEADERS, b"a" * 600))
    assert not scanner.feed(frame(CONTINUATION, b"b" * 600))


def test_big_data_frames_and_finished_blocks_do_not_count():
    scanner = HeaderBlockScanner(limit=1000)
    assert scanner.feed(PREFACE + frame(HEADERS, b"a" * 900, END_HEADERS))
    assert scanner.feed(frame(DATA, b"x" * 16000))
    assert scanner.feed(frame(HEADERS, b"a" * 900, END_HEADERS, stream_id=3))


def test_a_request_head_becomes_the_http11_parts():
    method, target, fields = request_fields(
        [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"app1.localhost"),
         (b":path", b"/x?y=1"), (b"cookie", b"a=1"), (b"cookie", b"b=2"),
         (b"host", b"other"), (b"expect", b"100-continue"), (b"accept", b"*/*")],
        end_stream=False)
    assert (method, target) == (b"POST", b"/x?y=1")
    assert fields == [(b"host", b"app1.localhost"), (b"accept", b"*/*"),
                      (b"cookie", b"a=1; b=2"), (b"transfer-encoding", b"chunked")]


def test_a_request_with_a_length_or_without_a_body_is_not_chunked():
    _, _, with_length = request_fields([(b":method", b"PUT"), (b":path", b"/"),
                                        (b"content-length", b"3")], end_stream=False)
    assert with_length == [(b"content-length", b"3")]
    _, _, bodiless = request_fields([(b":method", b"GET"), (b":path", b"/"),
                                     (b"host", b"h")], end_stream=True)
    assert bodiless == [(b"host", b"h")]


def test_a_response_head_loses_its_connection_specific_fields():
    head = (b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nVia: 1.1 dynomesh\r\n\r\n")
    assert response_fields(head) == [(b":status", b"201"), (b"content-type", b"text/plain"),
                                     (b"via", b"1.1 dynomesh")]
