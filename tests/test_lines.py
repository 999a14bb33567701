"""LineSplitter: feed lines (a long one is refused) and output lines (a long one is split)."""

from __future__ import annotations

import pytest

from dynomesh.lines import LineSplitter, LineTooLong, decode_line

pytestmark = pytest.mark.unit


def test_lines_are_split_across_reads_and_reads_across_lines():
    splitter = LineSplitter(1024, overlong="refuse")
    assert splitter.feed(b'{"a"') == []
    assert splitter.feed(b': 1}\n{"b": 2}\n{"c"') == [b'{"a": 1}', b'{"b": 2}']
    assert splitter.feed(b"") == []
    assert splitter.feed(b': 3}\n\n') == [b'{"c": 3}', b""]


def test_lines_arrive_whole_whatever_the_chunking_and_flush_gives_the_last():
    splitter = LineSplitter(10_000)
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\nwor") == [b"hello"]
    assert splitter.feed(b"ld\n\nlast") == [b"world", b""]
    assert splitter.flush() == [b"last"]
    assert splitter.flush() == []


def test_every_split_of_a_stream_gives_the_same_lines():
    stream = b"one\r\ntwo\n\nthree four\nfive"
    whole = LineSplitter(64)
    expected = whole.feed(stream) + whole.flush()
    assert expected == [b"one", b"two", b"", b"three four", b"five"]
    for cut in range(len(stream) + 1):
        splitter = LineSplitter(64)
        assert splitter.feed(stream[:cut]) + splitter.feed(stream[cut:]) + splitter.flush() == expected


def test_carriage_returns_before_newlines_are_dropped():
    assert LineSplitter(100).feed(b"a\r\nb\n") == [b"a", b"b"]
    splitter = LineSplitter(100)
    assert splitter.feed(b"a\r") == []
    assert splitter.feed(b"\n") == [b"a"]  # a CR and its newline in different reads


def test_refused_a_line_that_never_ends():
    splitter = LineSplitter(1024, overlong="refuse")
    splitter.feed(b"x" * 1000)
    with pytest.raises(LineTooLong):
        splitter.feed(b"x" * 100)


def test_refused_a_whole_line_over_the_bound_in_one_read():
    with pytest.raises(LineTooLong):
        LineSplitter(10, overlong="refuse").feed(b"x" * 11 + b"\n")
    assert LineSplitter(10, overlong="refuse").feed(b"x" * 10 + b"\n") == [b"x" * 10]


def test_split_lines_over_the_limit_into_pieces_of_the_limit():
    splitter = LineSplitter(10)
    assert splitter.feed(b"x" * 25 + b"\n") == [b"x" * 10, b"x" * 10, b"x" * 5]


def test_split_a_line_of_exactly_the_limit_is_not_split():
    splitter = LineSplitter(10)
    assert splitter.feed(b"y" * 10) == []
    assert splitter.feed(b"\n") == [b"y" * 10]


def test_split_a_long_line_without_newline_comes_in_pieces_and_memory_stays_bounded():
    splitter = LineSplitter(10)
    out = []
    for _ in range(100):
        out += splitter.feed(b"z" * 7)
    assert all(len(piece) == 10 for piece in out)
    # 700 bytes: 69 full pieces out, the last 10 held in case a newline follows.
    assert len(out) == 69
    assert splitter.flush() == [b"z" * 10]


def test_split_a_held_start_and_its_end_come_out_in_order():
    splitter = LineSplitter(10)
    assert splitter.feed(b"a" * 15) == [b"a" * 10]
    assert splitter.feed(b"b" * 8 + b"\nc\n") == [b"a" * 5 + b"b" * 5, b"b" * 3, b"c"]


def test_herokus_10000_byte_limit_splits_a_dyno_line():
    pieces = LineSplitter(10_000).feed(b"q" * 25000 + b"\n")
    assert [len(p) for p in pieces] == [10000, 10000, 5000]


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"max_bytes": 5, "overlong": "drop"}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        LineSplitter(**kwargs)


def test_invalid_utf8_is_replaced_not_lost():
    assert decode_line(b"caf\xc3\xa9 \xff") == "café \ufffd"


def test_held_is_the_unfinished_line_and_feeding_it_to_a_new_splitter_continues_it():
    first = LineSplitter(100)
    assert first.feed(b"one\ntw") == [b"one"]
    second = LineSplitter(100)
    assert second.feed(first.held()) == []
    assert second.feed(b"o\nthree") == [b"two"]
    assert second.held() == b"three"
