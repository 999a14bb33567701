"""Request and response checks (sans-IO): sizes, targets, Host, trailers, the growth guard."""

import pytest

from router import errors
from router.config import ConfigError, Limits
from router.errors import RequestRejected, ResponseRejected
from router.limits import (GrowthGuard, allowed_trailers, check_request_head,
                           check_response_head, check_trailers, origin_form, valid_host)

pytestmark = pytest.mark.unit

LIMITS = Limits()


def refused(call, *args) -> errors.RouterError:
    with pytest.raises((RequestRejected, ResponseRejected)) as info:
        call(*args)
    return info.value.error


def test_request_line_of_8192_bytes_passes_and_one_more_is_414():
    target = b"/" + b"a" * (8192 - len(b"GET  HTTP/1.1") - 1)
    check_request_head(b"GET", target, [(b"Host", b"a")], LIMITS)
    assert refused(check_request_head, b"GET", target + b"a", [], LIMITS) is \
        errors.REQUEST_LINE_TOO_LONG


def test_header_line_and_name_limits_and_field_count():
    value = b"v" * (8192 - len(b"X-Long: "))
    check_request_head(b"GET", b"/", [(b"X-Long", value)], LIMITS)
    assert refused(check_request_head, b"GET", b"/", [(b"X-Long", value + b"v")], LIMITS) is \
        errors.HEADER_TOO_LONG
    assert refused(check_request_head, b"GET", b"/", [(b"N" * 1001, b"v")], LIMITS) is \
        errors.HEADER_TOO_LONG
    check_request_head(b"GET", b"/", [(b"X", b"1")] * 1000, LIMITS)
    assert refused(check_request_head, b"GET", b"/", [(b"X", b"1")] * 1001, LIMITS) is \
        errors.TOO_MANY_HEADERS


def test_the_head_size_below_which_nothing_needs_checking():
    assert LIMITS.request_head_check == 4000  # 1000 fields of "a:" CRLF
    assert Limits(headers=5000).request_head_check == 8192
    with pytest.raises(ConfigError, match="--max-header-line"):
        Limits(header_line=10)


@pytest.mark.parametrize("target, fields, expected", [
    (b"http://app1.localhost/a?b", [(b"Host", b"other")], (b"/a?b", [(b"Host", b"app1.localhost")])),
    (b"HTTPS://app1.localhost:8443", [(b"HOST", b"")],
     (b"/", [(b"Host", b"app1.localhost:8443")])),
    (b"http://app1.localhost?q=1", [(b"host", b"x"), (b"A", b"1")],
     (b"/?q=1", [(b"Host", b"app1.localhost"), (b"A", b"1")])),
])
def test_absolute_form_takes_its_host_from_the_target(target, fields, expected):
    assert origin_form(b"GET", target, fields) == expected


def test_absolute_form_still_needs_a_host_field():
    # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host; Heroku refuses HTTP/1.0
    # without Host too.
    assert refused(origin_form, b"GET", b"http://app1.localhost/", []) is errors.BAD_HOST


def test_asterisk_form_is_for_options_only():
    assert origin_form(b"OPTIONS", b"*", [(b"Host", b"a")]) == (b"*", [(b"Host", b"a")])
    assert refused(origin_form, b"GET", b"*", []) is errors.BAD_TARGET


@pytest.mark.parametrize("method, target, error", [
    (b"CONNECT", b"app1.localhost:443", errors.CONNECT_METHOD),
    (b"CONNECT", b"/", errors.CONNECT_METHOD),
    (b"GET", b"ftp://app1.localhost/", errors.BAD_TARGET),
    (b"GET", b"http://user@app1.localhost/", errors.BAD_TARGET),
    (b"GET", b"http:///path", errors.BAD_HOST),
])
def test_other_targets_are_refused(method, target, error):
    assert refused(origin_form, method, target, []) is error


@pytest.mark.parametrize("value, valid", [
    (b"app1.localhost", True), (b"App1.Localhost:8080", True), (b"[::1]:80", True),
    (b"127.0.0.1", True), (b"app1.localhost:", True), (b"a b", False), (b"a/b", False),
    (b"a:b", False), (b"a:123456", False), (b"", False), (b"a@b", False),
])
def test_valid_host(value, valid):
    assert valid_host(value) is valid


def test_trailers_may_not_frame_route_or_forward():
    check_trailers([(b"X-Checksum", b"abc")], LIMITS)
    for name in (b"Content-Length", b"host", b"Transfer-Encoding", b"X-Forwarded-For"):
        assert refused(check_trailers, [(name, b"1")], LIMITS) is errors.BAD_TRAILERS
    assert allowed_trailers([(b"X-Sum", b"1"), (b"Set-Cookie", b"a")]) == [(b"X-Sum", b"1")]


def test_response_limits_status_line_header_line_and_set_cookie():
    check_response_head(8192 - 13, [(b"X", b"v" * (512 * 1024 - 3))], LIMITS)
    assert refused(check_response_head, 8192 - 12, [], LIMITS) is errors.RESPONSE_TOO_LARGE
    assert refused(check_response_head, 2, [(b"X", b"v" * (512 * 1024))], LIMITS) is \
        errors.RESPONSE_TOO_LARGE
    check_response_head(2, [(b"Set-Cookie", b"c" * (8192 - 12))], LIMITS)
    assert refused(check_response_head, 2, [(b"Set-Cookie", b"c" * 8192)], LIMITS) is \
        errors.RESPONSE_TOO_LARGE


def test_growth_guard_allows_progress_and_stops_a_line_that_never_ends():
    guard = GrowthGuard(line_limit=100, first_line_limit=50, fields_limit=10)
    fields = []
    assert guard.check(200, fields, 10) == GrowthGuard.OK  # marks the start
    assert guard.check(300, fields, 10) == GrowthGuard.OK  # first line + first field: 154
    assert guard.check(360, fields, 10) == GrowthGuard.LINE_TOO_LONG
    fields.append((b"a", b"b"))
    assert guard.check(400, fields, 0) == GrowthGuard.OK  # a field completed: progress
    assert guard.check(504, fields, 0) == GrowthGuard.OK
    assert guard.check(505, fields, 0) == GrowthGuard.LINE_TOO_LONG
    assert guard.check(1, [], 51) == GrowthGuard.FIRST_LINE_TOO_LONG
    assert guard.check(1, [(b"a", b"b")] * 11, 0) == GrowthGuard.TOO_MANY_FIELDS
    assert guard.check(10, [], 0) == GrowthGuard.OK  # a new section starts afresh
