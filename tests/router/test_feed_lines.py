"""Route feed lines -> table updates, without sockets (router.feed.decode_line), and the
table's multi-app delta (RouteTable.apply_delta)."""

from __future__ import annotations

import json

import pytest

from dynomesh.feedclient import FeedResync
from router.feed import decode_line
from router.routes import RoutesError
from router.table import DuplicateHostError
from tests.router.conftest import table_of

pytestmark = pytest.mark.unit


def line(**message) -> bytes:
    return json.dumps(message).encode()


def app(name, *hosts, dynos=()):
    return {"name": name, "hosts": list(hosts) or [f"{name}.localhost"],
            "dynos": [{"name": f"web.{i + 1}", "address": a} for i, a in enumerate(dynos)]}


def decode(data, current=None, applied=None, fresh=False, need_snapshot=False):
    return decode_line(data, current, applied, fresh=fresh, need_snapshot=need_snapshot)


def test_a_snapshot_is_a_whole_table_at_its_revision():
    update = decode(line(type="snapshot", revision=41, apps=[app("a"), app("b")]))
    assert update.kind == "snapshot" and update.changed is None
    assert update.table.revision == 41 and sorted(update.table.apps) == ["a", "b"]


def test_a_delta_replaces_and_removes_only_what_it_names():
    current = table_of(app("a", dynos=["127.0.0.1:1"]), app("b"), app("c"), revision=41)
    b = current.app("b")
    update = decode(line(type="delta", revision=42, apps=[app("a", dynos=["127.0.0.1:2"])],
                         removed=["c"]), current, 41)
    assert update.changed == ("c", "a") and update.table is None
    assert current.lookup(b"a.localhost").dynos[0].port == 1  # decoding changes nothing
    update.apply_to(current)  # in place
    assert current.revision == 42 and sorted(current.apps) == ["a", "b"]
    assert current.lookup(b"a.localhost").dynos[0].port == 2
    assert current.app("b") is b  # untouched entries are kept, not rebuilt


def test_a_delta_the_table_refuses_asks_for_a_resync_and_changes_nothing():
    current = table_of(app("a"), app("b"), revision=41)
    update = decode(line(type="delta", revision=42, apps=[app("c", "b.localhost")], removed=[]),
                    current, 41)
    with pytest.raises(FeedResync, match="claimed by both app 'b' and app 'c'"):
        update.apply_to(current)
    assert current.revision == 41 and sorted(current.apps) == ["a", "b"]


def test_a_snapshot_keeps_the_entries_that_did_not_change():
    current = table_of(app("a"), app("b", dynos=["127.0.0.1:1"]), revision=41)
    update = decode(line(type="snapshot", revision=42, apps=[app("a"), app("b")]), current, 41)
    assert update.table.app("a") is current.app("a")
    assert update.table.app("b") is not current.app("b") and update.table is not current


def test_repeats_are_ignored_but_a_fresh_snapshot_is_taken_even_when_it_went_back():
    current = table_of(app("a"), revision=50)
    assert decode(line(type="delta", revision=50, apps=[app("x")], removed=[]), current, 50) is None
    assert decode(line(type="snapshot", revision=49, apps=[]), current, 50) is None
    update = decode(line(type="snapshot", revision=3, apps=[]), current, 50, fresh=True)
    assert update.revision == 3 and len(update.table) == 0


def test_heartbeats_and_unknown_kinds():
    assert decode(line(type="heartbeat", revision=60), None, 50).kind == "heartbeat"
    assert decode(line(type="gossip", revision=61), None, 50) is None


@pytest.mark.parametrize("data, words", [
    (b"{not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (line(type="delta", apps=[]), "no valid revision"),
    (line(type="delta", revision=51, apps={}, removed=[]), "apps: not a list"),
    (line(type="delta", revision=51, apps=[], removed="a"), "removed"),
    (line(type="delta", revision=51, apps=[{"name": "x", "hosts": ["bad host"]}], removed=[]),
     r"apps\[0\].hosts\[0\]"),
    (line(type="snapshot", revision=51, apps=[app("a"), app("b", "a.localhost")]),
     "claimed by both"),
])
def test_a_line_that_cannot_be_applied_whole_asks_for_a_resync(data, words):
    with pytest.raises(FeedResync, match=words):
        decode(data, table_of(app("z"), revision=50), 50)


def test_a_delta_is_refused_where_a_snapshot_is_due():
    with pytest.raises(FeedResync, match="snapshot was due"):
        decode(line(type="delta", revision=51, apps=[], removed=[]), table_of(revision=50), 50,
               need_snapshot=True)


def test_a_delta_releases_old_hosts_before_claiming_new_ones():
    table = table_of(app("blog", "blog.localhost", "*.example.test"), app("shop"), revision=1)
    table.apply_delta([app_route("blog", "blog.localhost"),
                       app_route("shop", "shop.localhost", "*.example.test")], [], 2)
    assert table.lookup(b"a.example.test").name == "shop"
    with pytest.raises(DuplicateHostError):
        table.apply_delta([app_route("news", "shop.localhost")], [], 3)
    with pytest.raises(RoutesError, match="listed twice"):
        table.apply_delta([app_route("news"), app_route("news")], [], 3)
    assert table.revision == 2 and table.app("news") is None


def app_route(name, *hosts):
    from router.routes import parse_app

    return parse_app(app(name, *hosts), name)


@pytest.mark.parametrize("text", [
    '{}', '{"type": "snapshot", "revision": 3, "apps": [{"name": "a", "hosts": ["x.y"]}, {}]}',
    ' { "apps" : [ ] , "n" : { "k" : [1, 2] } }\n', '[1]', '"text"'])
def test_the_stepwise_decoder_of_large_lines_agrees_with_json(text):
    from router.jsonstream import loads_stepwise

    assert loads_stepwise(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1,}', '{"a": [1,]}', '{"a" 1}', '{"a": [1 2]}',
                                  '{"a": 1} x', '{"a": 1', '{"a": "\\ud800'])
def test_the_stepwise_decoder_refuses_what_json_refuses(text):
    from router.jsonstream import loads_stepwise

    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        loads_stepwise(text.encode())


def test_a_large_snapshot_line_decodes_to_the_same_table():
    apps = [app(f"app{i}", dynos=["127.0.0.1:1"]) for i in range(800)]
    data = line(type="snapshot", revision=9, apps=apps)
    assert len(data) > 64 * 1024
    table = decode(data).table
    assert sorted(table.apps) == sorted(a["name"] for a in apps)
    assert table.lookup(b"app799.localhost").dynos[0].port == 1


@pytest.mark.parametrize("window", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("text", [
    '{"type": "snapshot", "revision": 12345678, "apps": [{"name": "caf\u00e9", "hosts": ["x.y"]},'
    ' {"n": [1.5e10, -0.25, true, false, null, "\u20ac\U0001f600"]}], "tail": 9876543210}',
    ' { "apps" : [ ] , "n" : { "k" : [1, 2] } , "z": 100000 }\n', '{}', '[1]', '"text"'])
def test_the_stepwise_decoder_agrees_with_json_across_window_edges(monkeypatch, window, text):
    from router.jsonstream import _Scanner, loads_stepwise

    monkeypatch.setattr(_Scanner, "WINDOW", window)
    assert loads_stepwise(text.encode()) == json.loads(text)


@pytest.mark.parametrize("window", [1, 5, 64])
@pytest.mark.parametrize("data", [b'{"a": [1, 2', b'{"a": 12', b'{"a": "\xc3"}', b'{"a": tru}',
                                  b'{"a": [1,]}', b'{"a": 1} {"b": 2}'])
def test_the_stepwise_decoder_refuses_a_bad_line_across_window_edges(monkeypatch, window, data):
    from router.jsonstream import _Scanner, loads_stepwise

    monkeypatch.setattr(_Scanner, "WINDOW", window)
    with pytest.raises(ValueError):
        json.loads(data)
    with pytest.raises(ValueError):
        loads_stepwise(data)
