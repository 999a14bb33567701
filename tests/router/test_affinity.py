"""Session affinity's policy (router/affinity.py): signed cookie values, the roster of one app's
dynos, and reading cookies and the scheme from a forwarded head. Pure: no I/O."""

import base64
import hashlib
import hmac
import json

import pytest

from dynomesh.feedclient import FeedResync
from router.affinity import (MOST_COOKIES, AffinityKeyError, Roster, SigningKey, cookie_value, forwarded_https,
                             parse_keys, with_field)
from router.feed import OFFLOAD_BYTES, decode_large_line, decode_line
from router.routes import DynoRoute, RoutesError, parse_routes
from router.source import RoutesFile
from router.table import RouteTable

pytestmark = pytest.mark.unit

OLD = SigningKey("k1", b"o" * 32)
NEW = SigningKey("k2", b"n" * 32)


class Pool:
    """A dyno's pool as the roster sees it: hashable, with its dyno."""

    def __init__(self, name: str, address: str = "10.0.0.1:20001") -> None:
        host, _, port = address.rpartition(":")
        self.dyno = DynoRoute(name, host, int(port))

    def __repr__(self) -> str:
        return f"<Pool {self.dyno.name}>"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_cookie_value_names_the_dyno_and_carries_an_hmac_of_app_dyno_and_address():
    value = cookie_value(NEW, "hello", "web.2", "10.0.0.1:20002")
    key_id, mac, dyno = value.split(b".", 2)
    assert (key_id, dyno) == (b"k2", b"web.2")
    expected = hmac.new(b"n" * 32, b"dynomesh-session-affinity\x005:hello5:web.214:"
                        b"10.0.0.1:20002", hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(mac + b"=") == expected
    assert b"10.0.0.1" not in value  # the address is signed, never shown
    # Another app, dyno, address or key: another value.
    assert len({value, cookie_value(NEW, "other", "web.2", "10.0.0.1:20002"),
                cookie_value(NEW, "hello", "web.1", "10.0.0.1:20002"),
                cookie_value(NEW, "hello", "web.2", "10.0.0.1:20003"),
                cookie_value(OLD, "hello", "web.2", "10.0.0.1:20002")}) == 5


def head(*cookie_fields: bytes) -> bytes:
    """A forwarded request head with these Cookie fields."""
    return (b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n"
            + b"".join(b"Cookie: %s\r\n" % field for field in cookie_fields)
            + b"X-Forwarded-Proto: http\r\nVia: 1.1 dynomesh\r\n\r\n")


def pair(value: bytes) -> bytes:
    return b"dynomesh-session-affinity=" + value


def test_the_roster_pins_a_valid_cookie_and_says_whether_the_newest_key_signed_it():
    web1, web2 = Pool("web.1", "10.0.0.1:20001"), Pool("web.2", "10.0.0.1:20002")
    roster = Roster("hello", (web1, web2), (NEW, OLD))
    value2 = cookie_value(NEW, "hello", "web.2", "10.0.0.1:20002")
    assert roster.pinned(head(pair(value2))) == (web2, True)
    # Signed by the previous key (a rotation): still honoured, to be signed again.
    old1 = cookie_value(OLD, "hello", "web.1", "10.0.0.1:20001")
    assert roster.pinned(head(b"theme=dark; " + pair(old1) + b"; lang=en")) == (web1, False)
    # The first valid one wins, wherever it stands; invalid ones are skipped.
    new1 = cookie_value(NEW, "hello", "web.1", "10.0.0.1:20001")
    assert roster.pinned(head(pair(b"junk"), b"a=1;" + pair(new1), pair(value2))) == (web1, True)
    assert roster.pinned(head(pair(b'"' + value2 + b'"'))) == (web2, True)  # quoted, RFC 6265
    assert roster.pinned(head(b"theme=dark")) == (None, False)
    # A flood of cookies of that name: only the first few are looked at.
    assert roster.pinned(head(*[pair(b"junk")] * MOST_COOKIES, pair(value2))) == (None, False)
    assert roster.pinned(head(*[pair(b"junk")] * (MOST_COOKIES - 1), pair(value2))) == (web2,
                                                                                        True)
    assert roster.pinned(head(pair(value2[:-1]))) == (None, False)


@pytest.mark.parametrize("value", [
    cookie_value(NEW, "other-app", "web.1", "10.0.0.1:20001"),  # moved from another app
    cookie_value(NEW, "hello", "web.1", "10.0.0.1:29999"),  # web.1 restarted elsewhere
    cookie_value(NEW, "hello", "web.3", "10.0.0.1:20003"),  # a dyno that left
    cookie_value(SigningKey("k0", b"x" * 32), "hello", "web.1", "10.0.0.1:20001"),  # retired
    cookie_value(SigningKey("k2", b"f" * 32), "hello", "web.1", "10.0.0.1:20001"),  # forged
    b"k2." + b"A" * 43 + b".web.1",  # a made-up MAC
    b"", b"web.1",
])
def test_the_roster_pins_nothing_for_a_cookie_it_did_not_make(value):
    roster = Roster("hello", (Pool("web.1", "10.0.0.1:20001"),), (NEW, OLD))
    assert roster.pinned(head(pair(value))) == (None, False)


def test_set_cookie_is_a_session_cookie_for_the_whole_site_and_secure_only_over_https():
    web1 = Pool("web.1")
    roster = Roster("hello", (web1,), (NEW, OLD))
    value = cookie_value(NEW, "hello", "web.1", "10.0.0.1:20001")
    assert roster.set_cookie(web1, secure=False) == (
        b"Set-Cookie: dynomesh-session-affinity=" + value + b"; Path=/; HttpOnly; SameSite=Lax")
    assert roster.set_cookie(web1, secure=True).endswith(b"; SameSite=Lax; Secure")
    assert b"Expires" not in roster.set_cookie(web1, True)  # ends with the browser session
    assert roster.set_cookie(Pool("web.9"), secure=False) == b""  # not in the roster


def test_a_dyno_whose_name_cannot_go_in_a_cookie_is_balanced_but_never_pinned():
    odd = Pool("web 1;x")
    roster = Roster("hello", (odd,), (NEW,))
    assert roster.set_cookie(odd, secure=False) == b""
    assert roster.pinned(head(pair(cookie_value(NEW, "hello", "web 1;x", "10.0.0.1:20001")))) \
        == (None, False)


def test_https_is_read_from_the_forwarded_proto_the_router_sends():
    assert forwarded_https(b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\n"
                           b"X-Forwarded-Port: 443\r\n\r\n")
    assert not forwarded_https(b"GET / HTTP/1.1\r\nx-forwarded-proto: http\r\n\r\n")
    assert not forwarded_https(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_with_field_adds_a_field_before_the_end_of_a_head():
    head = b"HTTP/1.1 200 OK\r\nSet-Cookie: app=1\r\nVia: 1.1 dynomesh\r\n\r\n"
    assert with_field(head, b"Set-Cookie: b=2") == (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: app=1\r\nVia: 1.1 dynomesh\r\nSet-Cookie: b=2\r\n\r\n")


def test_keys_parse_newest_first_and_bad_ones_are_named_by_their_path():
    keys = parse_keys([{"id": "k2", "secret": b64(b"n" * 32)},
                       {"id": "k1", "secret": b64(b"o" * 32)}])
    assert keys == (NEW, OLD)
    assert "nnnn" not in repr(keys) and "bm5u" not in repr(keys)  # secrets stay out of repr
    for raw, message in [
        ({"id": "k1"}, "affinity_keys: expected a list"),
        (["k1"], "affinity_keys[0]: expected an object"),
        ([{"id": "k.1", "secret": b64(b"o" * 32)}], "affinity_keys[0].id: expected 1-64"),
        ([{"id": "k1", "secret": b64(b"o" * 8)}], "affinity_keys[0].secret: too short"),
        ([{"id": "k1", "secret": "***"}], "affinity_keys[0].secret: not base64url"),
        ([{"id": "k1", "secret": b64(b"o" * 32)}, {"id": "k1", "secret": b64(b"n" * 32)}],
         "affinity_keys[1].id: key 'k1' listed twice"),
    ]:
        with pytest.raises(AffinityKeyError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_keys(raw)


def test_a_routes_document_carries_keys_and_the_per_app_switch():
    document = parse_routes(json.loads(json.dumps({
        "affinity_keys": [{"id": "k2", "secret": b64(b"n" * 32)}],
        "apps": [{"name": "a", "hosts": ["a.localhost"], "session_affinity": True},
                 {"name": "b", "hosts": ["b.localhost"]}]})))
    assert document.affinity_keys == (NEW,)
    assert [app.session_affinity for app in document.apps] == [True, False]
    assert RouteTable.from_document(document).affinity_keys == (NEW,)
    with pytest.raises(RoutesError, match=r"apps\[0\].session_affinity: expected true or false"):
        parse_routes({"apps": [{"name": "a", "hosts": [], "session_affinity": "yes"}]})
    with pytest.raises(RoutesError, match=r"affinity_keys\[0\].secret: too short"):
        parse_routes({"apps": [], "affinity_keys": [{"id": "k", "secret": "AAAA"}]})


def test_feed_lines_bring_the_keys_whole_and_a_delta_without_them_keeps_them():
    keys = [{"id": "k2", "secret": b64(b"n" * 32)}, {"id": "k1", "secret": b64(b"o" * 32)}]
    snapshot = decode_line(json.dumps({"type": "snapshot", "revision": 5, "apps": [],
                                       "affinity_keys": keys}).encode(), None, None,
                           fresh=True, need_snapshot=True)
    table = snapshot.table
    assert table.affinity_keys == (NEW, OLD)
    plain = decode_line(json.dumps({"type": "delta", "revision": 6, "apps": [],
                                    "removed": []}).encode(), table, 5, fresh=False,
                        need_snapshot=False)
    plain.apply_to(table)
    assert table.affinity_keys == (NEW, OLD) and table.revision == 6
    rotated = decode_line(json.dumps({"type": "delta", "revision": 7, "apps": [], "removed": [],
                                      "affinity_keys": keys[:1]}).encode(), table, 6,
                          fresh=False, need_snapshot=False)
    rotated.apply_to(table)
    assert table.affinity_keys == (NEW,)
    with pytest.raises(FeedResync, match=r"affinity_keys\[0\].secret"):
        decode_line(json.dumps({"type": "delta", "revision": 8, "apps": [], "removed": [],
                                "affinity_keys": [{"id": "k", "secret": ""}]}).encode(),
                    table, 7, fresh=False, need_snapshot=False)
    assert table.affinity_keys == (NEW,)  # a refused line changes nothing


async def test_a_large_snapshot_line_brings_its_keys_too():
    apps = [{"name": f"a{i}", "hosts": [f"a{i}.localhost"]} for i in range(2000)]
    data = json.dumps({"type": "snapshot", "revision": 3, "apps": apps,
                       "affinity_keys": [{"id": "k2", "secret": b64(b"n" * 32)}]}).encode()
    assert len(data) > OFFLOAD_BYTES
    update = await decode_large_line(data, None, None, fresh=True, need_snapshot=True)
    assert update.table.affinity_keys == (NEW,) and len(update.table) == 2000


def test_a_routes_file_brings_its_keys(tmp_path):
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"affinity_keys": [{"id": "k2", "secret": b64(b"n" * 32)}],
                                "apps": [{"name": "a", "hosts": ["a.localhost"],
                                          "session_affinity": True}]}))
    table = RoutesFile(path).load()
    assert table.affinity_keys == (NEW,) and table.app("a").session_affinity
