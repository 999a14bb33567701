"""Splitting a dyno's output into log lines."""

from __future__ import annotations

from dynomgr.output import LineSplitter, decode_line
import pytest

pytestmark = pytest.mark.unit


def test_lines_arrive_whole_whatever_the_chunking():
    splitter = LineSplitter()
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\nwor") == [b"hello"]
    assert splitter.feed(b"ld\n\nlast") == [b"world", b""]
    assert splitter.flush() == [b"last"]
    assert splitter.flush() == []


def test_carriage_returns_before_newlines_are_dropped():
    assert LineSplitter().feed(b"a\r\nb\n") == [b"a", b"b"]


def test_lines_over_the_limit_are_split_into_pieces_of_the_limit():
    splitter = LineSplitter(max_bytes=10)
    assert splitter.feed(b"x" * 25 + b"\n") == [b"x" * 10, b"x" * 10, b"x" * 5]


def test_a_line_of_exactly_the_limit_is_not_split():
    splitter = LineSplitter(max_bytes=10)
    assert splitter.feed(b"y" * 10) == []
    assert splitter.feed(b"\n") == [b"y" * 10]


def test_a_long_line_without_newline_is_emitted_in_pieces_and_memory_stays_bounded():
    splitter = LineSplitter(max_bytes=10)
    out = []
    for _ in range(100):
        out += splitter.feed(b"z" * 7)
    assert all(len(piece) == 10 for piece in out)
    # 700 bytes: 69 full pieces out, the last 10 held in case a newline follows.
    assert len(out) == 69
    assert splitter.flush() == [b"z" * 10]


def test_the_default_limit_is_herokus_10000_bytes():
    pieces = LineSplitter().feed(b"q" * 25000 + b"\n")
    assert [len(p) for p in pieces] == [10000, 10000, 5000]


def test_invalid_utf8_is_replaced_not_lost():
    assert decode_line(b"caf\xc3\xa9 \xff") == "café \ufffd"
