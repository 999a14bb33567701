"""The request-line and repeated Content-Length rules the router adds to llhttp (sans-IO)."""

import pytest

from router import errors
from router.errors import RequestRejected
from router.limits import exact_request_line, without_repeated_lengths

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("raw, anchored, exact", [
    (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", True, True),
    (b"\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", True, True),  # empty lines first
    (b"GET  /a HTTP/1.1\r\nHost: x\r\n\r\n", True, False),
    (b"GET /a  HTTP/1.1\r\nHost: x\r\n\r\n", True, False),
    (b"GET /a RTSP/1.1\r\nHost: x\r\n\r\n", True, False),
    (b"hello" + b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", False, True),  # after a body
    (b"hello" + b"GET  /a HTTP/1.1\r\nHost: x\r\n\r\n", False, False),
])
def test_exact_request_line(raw, anchored, exact):
    assert exact_request_line(raw, anchored, b"GET", b"/a", "1.1") is exact


def test_repeated_equal_lengths_become_one():
    head = (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nA: 1\r\ncontent-length:  5 \r\n\r\nhello")
    assert without_repeated_lengths(head) == (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nA: 1"
                                              b"\r\n\r\nhello")
    assert without_repeated_lengths(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nConte") is None


@pytest.mark.parametrize("lengths", [b"Content-Length: 5\r\nContent-Length: 6\r\n",
                                     b"Content-Length: 5\r\nContent-Length: 5, 5\r\n",
                                     b"Content-Length: x\r\nContent-Length: x\r\n"])
def test_different_or_odd_lengths_are_refused(lengths):
    with pytest.raises(RequestRejected) as refused:
        without_repeated_lengths(b"POST / HTTP/1.1\r\n" + lengths + b"\r\n")
    assert refused.value.error is errors.BAD_REQUEST
