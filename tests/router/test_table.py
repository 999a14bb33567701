"""RouteTable: Host header -> app entry, and cheap immutable deltas."""

import pytest

from router.routes import AppRoute, RoutesError
from router.table import DuplicateHostError, RouteTable, normalise_host

pytestmark = pytest.mark.unit


def app(name, *hosts):
    return AppRoute(name=name, hosts=tuple(hosts))


@pytest.fixture
def table():
    return RouteTable.build([
        app("app1", "app1.localhost", "*.example.com"),
        app("www", "www.example.com"),
        app("deep", "*.b.example.com"),
    ], revision=3)


def name_of(table, host: bytes):
    route = table.lookup(host)
    return route.name if route else None


def test_exact_host_matches_case_insensitively_and_ignores_the_port(table):
    assert name_of(table, b"app1.localhost") == "app1"
    assert name_of(table, b"APP1.LocalHost") == "app1"
    assert name_of(table, b"app1.localhost:8080") == "app1"
    assert name_of(table, b"app1.localhost.") == "app1"  # fully qualified form


def test_wildcard_matches_exactly_one_label(table):
    assert name_of(table, b"a.example.com") == "app1"
    assert name_of(table, b"A-1.Example.com:80") == "app1"
    assert name_of(table, b"example.com") is None
    assert name_of(table, b"a.b.example.com") == "deep"  # its own wildcard, one level down
    assert name_of(table, b"x.a.example.com") is None


def test_exact_name_beats_wildcard(table):
    assert name_of(table, b"www.example.com") == "www"


def test_unknown_or_malformed_hosts_match_nothing(table):
    for host in (b"nope.localhost", b"", b"localhost", b"a b.example.com",
                 b"app1.localhost:80x", b"-a.example.com", b"[::1]:8080"):
        assert name_of(table, host) is None, host


def test_normalise_host():
    assert normalise_host(b" App1.Example.COM.:8080") == b"app1.example.com"
    assert normalise_host(b"[::1]:80") == b"[::1]"


def test_with_app_replaces_one_entry_and_leaves_the_old_table_alone(table):
    updated = table.with_app(app("app1", "app1.localhost", "new.localhost"), revision=4)
    assert name_of(updated, b"new.localhost") == "app1"
    assert name_of(updated, b"a.example.com") is None  # the old entry's wildcard is gone
    assert updated.revision == 4 and len(updated) == 3
    # the snapshot a request may still be using is untouched
    assert name_of(table, b"a.example.com") == "app1"
    assert name_of(table, b"new.localhost") is None
    assert table.revision == 3


def test_with_app_adds_a_new_app(table):
    updated = table.with_app(app("fresh", "fresh.localhost"))
    assert name_of(updated, b"fresh.localhost") == "fresh"
    assert len(updated) == 4 and len(table) == 3


def test_without_app_removes_its_hosts(table):
    updated = table.without_app("www", revision=9)
    assert name_of(updated, b"www.example.com") == "app1"  # now the wildcard answers
    assert updated.app("www") is None and table.app("www") is not None


def test_a_host_claimed_by_two_apps_names_both():
    with pytest.raises(DuplicateHostError) as caught:
        RouteTable.build([app("one", "a.localhost"), app("two", "b.localhost", "a.localhost")])
    message = str(caught.value)
    assert "'one'" in message and "'two'" in message and "a.localhost" in message
    assert caught.value.path == "apps[1].hosts[1]"


def test_a_delta_cannot_steal_another_apps_host(table):
    with pytest.raises(DuplicateHostError, match="'www'.*'thief'"):
        table.with_app(app("thief", "www.example.com"))


def test_the_same_wildcard_for_two_apps_is_refused():
    with pytest.raises(DuplicateHostError):
        RouteTable.build([app("one", "*.x.com"), app("two", "*.x.com")])


def test_an_app_listed_twice_is_refused():
    with pytest.raises(RoutesError, match=r"apps\[1\].name"):
        RouteTable.build([app("one", "a.localhost"), app("one", "b.localhost")])


def test_empty_table_matches_nothing():
    assert RouteTable.empty().lookup(b"app1.localhost") is None
