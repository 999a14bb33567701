"""One-off dynos in the dyno manager, the pure parts: their assignment entries, the output
tail their end carries, and the caller's frames."""

from __future__ import annotations

import json
import signal

import aiohttp
import pytest

from dynomgr.assignments import OneOffSpec, dump_assignment, parse_entries
from dynomgr.attach import EndOfInput, Input, Resize, Signal, decode_event
from dynomgr.oneoff import OutputTail
from tests.dynomgr.test_assignments import SCHEMES, entry

pytestmark = pytest.mark.unit


def one_off(**overrides):
    fields = dict(kind="one-off", name="run.4821", type="run", command="bash",
                  attach="http://10.0.0.1:5050/vms/vm-1/dynos/d-1/attach", tty=[80, 24],
                  timeout=600, id="d-1")
    return entry(**{**fields, **overrides})


def test_a_one_off_entry_parses_and_dumps_back_the_same():
    dynos, errors = parse_entries([one_off()], SCHEMES)
    assert errors == []
    (assignment,) = dynos.values()
    assert assignment.one_off == OneOffSpec("bash", "http://10.0.0.1:5050/vms/vm-1/dynos/d-1"
                                            "/attach", (80, 24), 600)
    again, _ = parse_entries([dump_assignment(assignment)], SCHEMES)
    assert list(again.values()) == [assignment]


@pytest.mark.parametrize("overrides, message", [
    ({"command": " "}, "needs its command"),
    ({"attach": "ftp://x"}, "attach must be null or an http(s) URL"),
    ({"tty": [80]}, "tty must be null or [columns, rows]"),
    ({"timeout": True}, "timeout must be seconds"),
])
def test_a_bad_one_off_entry_is_refused_by_name(overrides, message):
    dynos, errors = parse_entries([one_off(**overrides)], SCHEMES)
    assert not dynos and message in str(errors[0]) and "run.4821" in str(errors[0])


def test_the_output_tail_keeps_the_last_lines_within_its_bounds():
    tail = OutputTail(lines=3, chars=12)
    for line in ("one", "two", "three", "four"):
        tail.add(line)
    assert tail.text() == "three\nfour\n"  # "two" is cut whole, not in half
    tail.add("x" * 20)
    assert tail.text() == "x" * 11 + "\n"
    assert OutputTail().text() == ""


def message(kind, data):
    return aiohttp.WSMessage(kind, data, None)


def test_the_callers_frames_become_events():
    text, binary = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
    assert decode_event(message(binary, b"\x00ls\n")) == Input(b"ls\n")
    assert decode_event(message(binary, b"\x01not the caller's")) is None
    assert decode_event(message(text, json.dumps({"op": "eof"}))) == EndOfInput()
    assert decode_event(message(text, json.dumps({"op": "resize", "cols": 100, "rows": 30}))
                        ) == Resize(100, 30)
    assert decode_event(message(text, json.dumps({"op": "resize", "cols": 0, "rows": 30}))
                        ) is None
    assert decode_event(message(text, json.dumps({"op": "signal", "name": "INT"}))
                        ) == Signal(signal.SIGINT)
    assert decode_event(message(text, json.dumps({"op": "signal", "name": "KILL"}))) is None
    assert decode_event(message(text, "not json")) is None
