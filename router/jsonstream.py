"""A large JSON object (a route feed snapshot, a routes file) decoded one array element at a time.

`json.loads` of a 50 MB line holds the loop for its whole duration and returns every element
at once (hundreds of megabytes of dicts and lists for 100 000 app entries). `stepwise_events`
yields the top-level object's members, and the elements of its arrays one by one, so a caller
can parse each element into its entry and let the decoded JSON go before the next, and can
stop between elements (router/tableload.py runs such steps in slices). The text is decoded
from UTF-8 a window at a time (`_Scanner`), so the line never exists as one str either.
Errors are `ValueError`s where `json.loads` would raise one.
"""

from __future__ import annotations

import codecs
import json
import re

_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def loads_stepwise(data: bytes):
    """`json.loads` for a large line, taking the arrays of the top-level object one element
    at a time (`stepwise_events`)."""
    message = None
    for event, key, value in stepwise_events(data):
        if event == "list":
            message[key] = []
        elif event == "item":
            message[key].append(value)
        elif event == "value":
            message[key] = value
        else:
            message = value
    return message


def stepwise_events(data: bytes):
    """The top-level object of a JSON line as events: ("whole", None, {}) first, then
    ("value", key, value) for each member, except arrays: ("list", key, None), then
    ("item", key, element) for each element. Anything but an object is one ("whole", None,
    value). Raises ValueError where json.loads would."""
    scan = _Scanner(data)
    if not scan.at("{"):
        yield "whole", None, json.loads(data)  # not an object: let json say what is wrong
        return
    yield "whole", None, {}
    scan.pos += 1
    while not scan.at("}"):
        key = scan.value()
        if not isinstance(key, str) or not scan.at(":"):
            raise ValueError(f"expected a key and ':' at character {scan.offset}")
        scan.pos += 1
        if scan.at("["):
            yield "list", key, None
            scan.pos += 1
            while not scan.at("]"):
                item = scan.value()
                yield "item", key, item
                del item
                if scan.at(","):
                    scan.pos += 1
                    if scan.at("]"):
                        raise ValueError(f"a ',' before ']' at character {scan.offset}")
                elif not scan.at("]"):
                    raise ValueError(f"expected ',' or ']' at character {scan.offset}")
            scan.pos += 1
        else:
            value = scan.value()
            yield "value", key, value
            del value
        if scan.at(","):
            scan.pos += 1
            if scan.at("}"):
                raise ValueError(f"a ',' before '}}' at character {scan.offset}")
        elif not scan.at("}"):
            raise ValueError(f"expected ',' or '}}' at character {scan.offset}")
    scan.pos += 1
    if not scan.at_end():
        raise ValueError(f"extra data after the object at character {scan.offset}")


class _Scanner:
    """The text of a UTF-8 line, decoded a window at a time: the whole of a 50 MB line as one
    str would cost its allocation and copy (and page faults: 60 ms on a small VM) in one go."""

    WINDOW = 256 * 1024  # bytes decoded at a time

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._read = 0  # bytes decoded so far
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._dropped = 0  # characters before self.text
        self.text = ""
        self.pos = 0
        self.done = not data

    @property
    def offset(self) -> int:
        return self._dropped + self.pos

    def _more(self, size: int) -> bool:
        """Drop the text before `pos`, append the next `size` bytes; False at the end."""
        if self.done:
            return False
        end = min(len(self._data), self._read + size)
        self.done = end == len(self._data)
        chunk = self._decoder.decode(self._data[self._read:end], final=self.done)
        self._read = end
        self._dropped += self.pos
        self.text = self.text[self.pos:] + chunk
        self.pos = 0
        return True

    def at(self, char: str) -> bool:
        """Skips whitespace; is `char` next?"""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text) or not self._more(self.WINDOW):
                return self.text.startswith(char, self.pos)

    def at_end(self) -> bool:
        self.at("")
        return self.pos == len(self.text)

    def value(self):
        """The JSON value at `pos` (whitespace skipped). One cut by the window's end fails to
        decode, or (a number) ends at the window's end: then the window grows and it is
        decoded again; growing doubles, so a large value costs O(its size)."""
        size = self.WINDOW
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except ValueError:
                if not self._more(size):
                    raise
            else:
                if end < len(self.text) or not self._more(size):
                    self.pos = end
                    return value
            size *= 2
