"""The ready pipe's child side and its line format."""

from __future__ import annotations

import os

import pytest

from dynomesh.ready import READY_FD_ENV, NotReady, Readiness, parse
from tests.conftest import read_all

pytestmark = pytest.mark.unit


def test_a_child_asked_announces_one_line_then_closes_the_pipe():
    read_end, write_end = os.pipe()
    environ = {READY_FD_ENV: str(write_end), "OTHER": "kept"}
    ready = Readiness.from_environ(environ)
    assert environ == {"OTHER": "kept"}  # its own children are not asked
    assert ready.asked
    ready.announce(port=8080, admin_port=None)
    ready.announce(port=9999)  # said once only
    assert not ready.asked
    line = read_all(read_end)  # end of file: the write end is closed
    assert line == b'READY {"port":8080,"admin_port":null}\n'
    assert parse(line) == {"port": 8080, "admin_port": None}


def test_a_child_nobody_asked_announces_nothing():
    ready = Readiness.from_environ({})
    assert not ready.asked
    ready.announce(port=1)  # no-op


def test_a_parent_that_stopped_waiting_does_not_break_the_announcement():
    read_end, write_end = os.pipe()
    os.close(read_end)
    Readiness(write_end).announce(port=1)
    with pytest.raises(OSError):
        os.fstat(write_end)  # closed all the same


@pytest.mark.parametrize("value", ["nope", "-1", "99999"])
def test_a_bad_descriptor_is_refused_with_the_variable_named(value):
    with pytest.raises(ValueError, match=READY_FD_ENV):
        Readiness.from_environ({READY_FD_ENV: value})


@pytest.mark.parametrize("line, words", [
    (b"", "exited before it was ready"),
    (b"listening on 8080\n", "instead of a ready line"),
    (b"READY {nope\n", "not JSON"),
    (b"READY [1]\n", "not an object"),
])
def test_anything_but_a_ready_line_is_not_ready(line, words):
    with pytest.raises(NotReady, match=words):
        parse(line)
