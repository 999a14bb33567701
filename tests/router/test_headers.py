"""Header rules (sans-IO): what the router changes on requests and responses."""

import uuid

import pytest

from router import errors
from router.errors import RequestRejected, ResponseRejected
from router.headers import (CHUNKED, CLOSE, EXPECT_CONTINUE, LENGTH, LENGTH_AND_CHUNKED, NONE,
                            UPGRADE, RequestIds, RequestRewriter, response_framing,
                            rewrite_response, unusual_request_head, valid_request_id)

pytestmark = pytest.mark.unit


class FixedIds(RequestIds):
    def next(self) -> bytes:
        return b"00000000-0000-4000-8000-000000000000"


def rewrite(headers, method=b"GET", target=b"/", peer=b"10.0.0.9", now_ms=1700000000123):
    rewriter = RequestRewriter(proto="http", port=8080, request_ids=FixedIds())
    head, host, request_id, fwd, framing, _ = rewriter.rewrite(method, target, headers, peer,
                                                               now_ms)
    lines = head.split(b"\r\n")
    assert head.endswith(b"\r\n\r\n")
    fields = [tuple(line.split(b": ", 1)) for line in lines[1:-2]]
    return lines[0], fields, host, request_id, fwd, framing


def names(fields):
    return [name.lower() for name, _ in fields]


def test_request_goes_up_as_http11_with_herokus_headers_in_order():
    start, fields, host, rid, fwd, framing = rewrite(
        [(b"Host", b"app1.localhost"), (b"Accept", b"*/*"), (b"Cookie", b"a=1"),
         (b"Cookie", b"b=2")])
    assert start == b"GET / HTTP/1.1"
    assert fields == [
        (b"Host", b"app1.localhost"), (b"Accept", b"*/*"), (b"Cookie", b"a=1"),
        (b"Cookie", b"b=2"),
        (b"X-Request-Id", b"00000000-0000-4000-8000-000000000000"),
        (b"X-Forwarded-For", b"10.0.0.9"),
        (b"X-Request-Start", b"1700000000123"),
        (b"X-Forwarded-Proto", b"http"),
        (b"X-Forwarded-Port", b"8080"),
        (b"Via", b"1.1 dynomesh"),
    ]
    assert host == b"app1.localhost" and fwd == b"10.0.0.9" and framing is NONE


def test_hop_by_hop_fields_and_those_named_in_connection_are_removed():
    _, fields, *_ = rewrite([
        (b"Host", b"a"), (b"Connection", b"keep-alive, X-Secret"), (b"X-Secret", b"s"),
        (b"Keep-Alive", b"timeout=5"), (b"Upgrade", b"websocket"), (b"TE", b"trailers"),
        (b"Proxy-Connection", b"keep-alive"), (b"Proxy-Authorization", b"Basic x"),
        (b"x-secret", b"again"), (b"X-Kept", b"1")])
    assert names(fields)[:2] == [b"host", b"x-kept"]
    for gone in (b"connection", b"x-secret", b"keep-alive", b"upgrade", b"te",
                 b"proxy-connection", b"proxy-authorization"):
        assert gone not in names(fields)


def test_connection_cannot_remove_the_routers_framing_fields():
    _, fields, *_ = rewrite([(b"Host", b"a"), (b"Connection", b"content-length, host"),
                             (b"Content-Length", b"3")], method=b"POST")
    assert (b"Content-Length", b"3") in fields and (b"Host", b"a") in fields


@pytest.mark.parametrize("value, kept", [
    (b"a" * 20, True), (b"A-z0+9/=" * 25, True), (b"a" * 19, False), (b"a" * 201, False),
    (b"abc def ghi jkl mnop qrs", False), (b"x" * 30 + b";", False), (b"", False),
])
def test_request_id_kept_only_if_20_to_200_allowed_characters(value, kept):
    _, fields, _, rid, *_ = rewrite([(b"Host", b"a"), (b"X-Request-Id", value)])
    ids = [v for n, v in fields if n == b"X-Request-Id"]
    assert ids == [rid]  # exactly one
    assert (rid == value) is kept
    assert valid_request_id(value) is kept


def test_only_the_first_request_id_counts_and_one_is_sent():
    _, fields, _, rid, *_ = rewrite([(b"Host", b"a"), (b"X-Request-Id", b"b" * 25),
                                     (b"x-request-id", b"c" * 25)])
    assert rid == b"b" * 25
    assert [v for n, v in fields if n.lower() == b"x-request-id"] == [b"b" * 25]


def test_forwarded_for_is_appended_and_proto_port_start_replaced():
    _, fields, _, _, fwd, _ = rewrite([
        (b"Host", b"a"), (b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-For", b"2.2.2.2, 3.3.3.3"),
        (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Port", b"443"),
        (b"X-Request-Start", b"1")])
    assert fwd == b"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"
    assert [v for n, v in fields if n.lower() == b"x-forwarded-for"] == [fwd]
    assert [v for n, v in fields if n.lower() == b"x-forwarded-proto"] == [b"http"]
    assert [v for n, v in fields if n.lower() == b"x-forwarded-port"] == [b"8080"]
    assert [v for n, v in fields if n.lower() == b"x-request-start"] == [b"1700000000123"]


def test_via_is_appended_after_the_clients_own():
    _, fields, *_ = rewrite([(b"Host", b"a"), (b"Via", b"1.0 fred")])
    assert [v for n, v in fields if n.lower() == b"via"] == [b"1.0 fred", b"1.1 dynomesh"]


def test_body_framing_length_chunked_and_chunked_wins_over_length():
    assert rewrite([(b"Host", b"a"), (b"Content-Length", b"5")], method=b"POST")[5] is LENGTH
    _, fields, _, _, _, framing = rewrite(
        [(b"Host", b"a"), (b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")],
        method=b"POST")
    assert framing is CHUNKED
    assert b"content-length" not in names(fields)  # RFC 9112 §6.3: never forward both
    assert [v for n, v in fields if n == b"Transfer-Encoding"] == [b"chunked"]


@pytest.mark.parametrize("hosts", [[], [b""], [b"a", b"a"], [b"a", b"b"]],
                         ids=["missing", "empty", "repeated", "two"])
def test_a_request_needs_exactly_one_non_empty_host(hosts):
    with pytest.raises(RequestRejected) as refused:
        rewrite([(b"Host", host) for host in hosts] + [(b"Accept", b"*/*")])
    assert refused.value.error is errors.BAD_HOST and refused.value.error.status == 400


def test_request_ids_are_uuid4():
    ids = RequestIds(batch=4)
    seen = {ids.next() for _ in range(50)}
    assert len(seen) == 50
    for value in seen:
        parsed = uuid.UUID(value.decode())
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed).encode() == value


@pytest.mark.parametrize("status, head, chunked, length, http11, expected", [
    (200, False, False, True, True, (LENGTH, LENGTH)),
    (200, False, True, False, True, (CHUNKED, CHUNKED)),
    (200, False, True, True, True, (CHUNKED, CHUNKED)),  # chunked wins
    (200, False, False, False, True, (CLOSE, CHUNKED)),  # keeps the client connection
    (200, False, False, False, False, (CLOSE, CLOSE)),  # HTTP/1.0 cannot read chunked
    (200, False, True, False, False, (CHUNKED, CLOSE)),
    (200, True, False, True, True, (NONE, NONE)),  # HEAD
    (204, False, False, False, True, (NONE, NONE)),
    (304, False, False, True, True, (NONE, NONE)),
    (101, False, False, False, True, (NONE, NONE)),
])
def test_response_framing(status, head, chunked, length, http11, expected):
    assert response_framing(status, head_request=head, chunked=chunked, has_length=length,
                            client_http11=http11) == expected


def response(headers, status=200, **kw):
    options = dict(head_request=False, client_http11=True, client_keep_alive=True) | kw
    head, up, down, keep = rewrite_response(status, headers, **options)
    lines = head.split(b"\r\n")
    return lines[0], [tuple(line.split(b": ", 1)) for line in lines[1:-2]], up, down, keep


def test_response_keeps_fields_strips_hop_by_hop_and_appends_via():
    start, fields, up, down, keep = response([
        (b"Server", b"app"), (b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5"),
        (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Content-Length", b"13"),
        (b"Via", b"1.1 inner")])
    assert start == b"HTTP/1.1 200 OK"
    assert fields == [(b"Server", b"app"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"),
                      (b"Content-Length", b"13"), (b"Via", b"1.1 inner"),
                      (b"Via", b"1.1 dynomesh")]
    assert (up, down, keep) == (LENGTH, LENGTH, True)


def test_response_without_length_is_rechunked_for_http11_clients():
    _, fields, up, down, keep = response([(b"Content-Type", b"text/event-stream")])
    assert (up, down, keep) == (CLOSE, CHUNKED, True)
    assert (b"Transfer-Encoding", b"chunked") in fields


def test_response_to_a_closing_client_says_connection_close():
    _, fields, *_, keep = response([(b"Content-Length", b"1")], client_keep_alive=False)
    assert keep is False and (b"Connection", b"close") in fields


def test_response_for_http10_client_is_close_delimited_without_chunked():
    _, fields, up, down, keep = response([(b"Transfer-Encoding", b"chunked")],
                                         client_http11=False, client_keep_alive=False)
    assert (up, down, keep) == (CHUNKED, CLOSE, False)
    assert b"transfer-encoding" not in names(fields)


def test_response_fields_named_in_connection_are_removed():
    _, fields, *_ = response([(b"Connection", b"X-Internal"), (b"X-Internal", b"1"),
                              (b"Content-Length", b"0")])
    assert names(fields) == [b"content-length", b"via"]


def test_head_response_keeps_its_content_length():
    _, fields, up, down, _ = response([(b"Content-Length", b"13")], head_request=True)
    assert (b"Content-Length", b"13") in fields and (up, down) == (NONE, NONE)


def test_unknown_status_gets_an_empty_reason():
    assert response([], status=599)[0] == b"HTTP/1.1 599 "


def test_a_status_line_keeps_the_dynos_reason_phrase():
    assert response([], status=421, reason=b"Deliberate Phrase")[0] == b"HTTP/1.1 421 Deliberate Phrase"
    assert response([], status=200, reason=b"")[0] == b"HTTP/1.1 200 "
    assert response([], status=666, reason=b"Custom")[0] == b"HTTP/1.1 666 Custom"
    assert response([], status=200, reason=b"OK")[0] == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize("status, reason", [(99, b"Low"), (1000, b"High"), (200, b"O\x00K"),
                                            (200, b"O\nK")])
def test_a_status_below_100_or_a_reason_with_controls_is_refused(status, reason):
    with pytest.raises(ResponseRejected):
        response([], status=status, reason=reason)


def test_an_http10_client_kept_alive_is_told_so():
    _, fields, up, down, keep = response([(b"Content-Length", b"1")], client_http11=False)
    assert keep is True and (b"Connection", b"keep-alive") in fields
    _, fields, up, down, keep = response([(b"Transfer-Encoding", b"chunked")],
                                         client_http11=False)
    assert (down, keep) == (CLOSE, False) and (b"Connection", b"close") in fields


# -- the rarer heads (unusual_request_head) --------------------------------------------------

_LENGTH_FIELD = [(b"Content-Length", b"5")]


@pytest.mark.parametrize("version, flags, framing, error", [
    ("1.0", 0, CHUNKED, errors.BAD_FRAMING),  # RFC 9112 §6.1
    ("1.0", UPGRADE, NONE, errors.BAD_REQUEST),  # RFC 9110 §7.8: the parser ignored it
    ("2.0", 0, NONE, errors.VERSION_NOT_SUPPORTED),
    ("0.9", 0, NONE, errors.VERSION_NOT_SUPPORTED),
    ("1.1", UPGRADE, CHUNKED, errors.BAD_FRAMING),  # a chunked upgrade body is not read
])
def test_a_rarer_head_the_router_refuses_names_why(version, flags, framing, error):
    with pytest.raises(RequestRejected) as refused:
        unusual_request_head(version, bool(flags & UPGRADE), True, flags, framing, [])
    assert refused.value.error is error


def test_an_upgrade_the_parser_and_the_rules_disagree_on_is_refused():
    with pytest.raises(RequestRejected) as refused:
        unusual_request_head("1.1", True, True, 0, NONE, [])
    assert refused.value.error is errors.BAD_REQUEST


def test_the_rarer_heads_keep_alive_speak_http11_and_expect_as_rfc_9110_says():
    # HTTP/1.0: no 100-continue (RFC 9110 §10.1.1), kept alive only when it asked.
    assert unusual_request_head("1.0", False, True, EXPECT_CONTINUE, LENGTH,
                                _LENGTH_FIELD) == (True, False, 0, 0)
    # Both framings: chunked wins and the connection closes after the response.
    assert unusual_request_head("1.1", False, True, LENGTH_AND_CHUNKED, CHUNKED,
                                []) == (False, True, LENGTH_AND_CHUNKED, 0)
    # Expect without a body: nothing to continue with.
    assert unusual_request_head("1.1", False, True, EXPECT_CONTINUE, NONE,
                                []) == (True, True, 0, 0)
    # An upgrade request's body of known length is read before the switch.
    assert unusual_request_head("1.1", True, True, UPGRADE, LENGTH,
                                _LENGTH_FIELD) == (True, True, UPGRADE, 5)
