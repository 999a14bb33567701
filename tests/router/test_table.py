"""RouteTable: Host header -> app entry, snapshots built whole, deltas in place."""

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


def test_put_replaces_one_entry_in_place(table):
    before = table.app("www")
    table.put(app("app1", "app1.localhost", "new.localhost"), revision=4)
    assert name_of(table, b"new.localhost") == "app1"
    assert name_of(table, b"a.example.com") is None  # the old entry's wildcard is gone
    assert table.revision == 4 and len(table) == 3
    assert table.app("www") is before  # other apps' entries are not rebuilt


def test_put_adds_a_new_app(table):
    table.put(app("fresh", "fresh.localhost"))
    assert name_of(table, b"fresh.localhost") == "fresh"
    assert len(table) == 4 and table.revision == 3


def test_remove_drops_its_hosts(table):
    table.remove("www", revision=9)
    assert name_of(table, b"www.example.com") == "app1"  # now the wildcard answers
    assert table.app("www") is None and table.revision == 9
    table.remove("nobody", revision=10)  # absent: only the revision moves
    assert len(table) == 2 and table.revision == 10


def test_a_host_claimed_by_two_apps_names_both():
    with pytest.raises(DuplicateHostError) as caught:
        RouteTable.build([app("one", "a.localhost"), app("two", "b.localhost", "a.localhost")])
    message = str(caught.value)
    assert "'one'" in message and "'two'" in message and "a.localhost" in message
    assert caught.value.path == "apps[1].hosts[1]"


def test_a_delta_cannot_steal_another_apps_host(table):
    with pytest.raises(DuplicateHostError, match="'www'.*'thief'"):
        table.put(app("thief", "www.example.com"))
    assert table.app("thief") is None and name_of(table, b"www.example.com") == "www"


def test_the_same_wildcard_for_two_apps_is_refused():
    with pytest.raises(DuplicateHostError):
        RouteTable.build([app("one", "*.x.com"), app("two", "*.x.com")])


def test_an_app_listed_twice_is_refused():
    with pytest.raises(RoutesError, match=r"apps\[1\].name"):
        RouteTable.build([app("one", "a.localhost"), app("one", "b.localhost")])


def test_empty_table_matches_nothing():
    assert RouteTable.empty().lookup(b"app1.localhost") is None


# -- deltas in place: O(the app), checked whole before anything changes ------------------------


def snapshot_of(table):
    return dict(table._exact), dict(table._wildcard), dict(table.apps)


def test_a_delta_touches_only_its_apps_hosts(table):
    exact, wildcard, apps = snapshot_of(table)
    changed = table.apply_delta([app("www", "www.example.com", "www2.example.com")], [], 4)
    assert changed == ("www",)
    new = table.app("www")
    after_exact, after_wildcard, after_apps = snapshot_of(table)
    assert after_exact.pop(b"www2.example.com") is new
    assert after_exact.pop(b"www.example.com") is new and exact.pop(b"www.example.com") is apps["www"]
    assert after_exact == exact and after_wildcard == wildcard  # every other key: same entry object
    assert {n: r for n, r in after_apps.items() if n != "www"} == \
        {n: r for n, r in apps.items() if n != "www"}


def test_a_host_moves_between_apps_within_one_delta(table):
    changed = table.apply_delta([app("app1", "app1.localhost"),
                                 app("www", "www.example.com", "*.example.com")], [], 4)
    assert changed == ("app1", "www")
    assert name_of(table, b"a.example.com") == "www"
    assert name_of(table, b"app1.localhost") == "app1"


def test_a_host_moves_when_its_app_is_removed_in_the_same_delta(table):
    table.apply_delta([app("heir", "www.example.com")], ["www"], 4)
    assert name_of(table, b"www.example.com") == "heir" and table.app("www") is None


def test_a_delta_claiming_a_host_kept_by_another_app_names_both_and_changes_nothing(table):
    exact, wildcard, apps = snapshot_of(table)
    with pytest.raises(DuplicateHostError) as caught:
        table.apply_delta([app("fresh", "fresh.localhost"),
                           app("thief", "ok.localhost", "*.example.com")], ["deep"], 4)
    assert caught.value.apps == ("app1", "thief") and caught.value.path == "apps[1].hosts[1]"
    assert snapshot_of(table) == (exact, wildcard, apps) and table.revision == 3


def test_two_new_apps_claiming_one_host_in_one_delta_are_both_named(table):
    with pytest.raises(DuplicateHostError, match="'one'.*'two'"):
        table.apply_delta([app("one", "x.localhost"), app("two", "x.localhost")], [], 4)
    assert table.app("one") is None and name_of(table, b"x.localhost") is None


def test_removal_releases_exact_names_and_wildcards(table):
    changed = table.apply_delta([], ["app1", "missing"], 5)
    assert changed == ("app1", "missing")
    for host in (b"app1.localhost", b"a.example.com"):
        assert name_of(table, host) is None
    assert table.hosts == 2 and table.revision == 5  # www.example.com and *.b.example.com


def test_a_delta_on_a_large_table_does_not_copy_it():
    table = RouteTable.build(app(f"a{i}", f"a{i}.localhost", f"*.a{i}.test") for i in range(2000))
    exact, wildcard = table._exact, table._wildcard
    table.put(app("a7", "seven.localhost"), revision=1)
    assert table._exact is exact and table._wildcard is wildcard and table.by_host is exact
    assert table.hosts == 3999 and name_of(table, b"x.a7.test") is None


def test_a_builder_keeps_equal_entries_of_the_previous_table(table):
    from router.table import TableBuilder

    builder = TableBuilder(7, previous=table)
    builder.add(app("www", "www.example.com"))
    builder.add(app("app1", "app1.localhost"))  # changed: its wildcard went
    rebuilt = builder.table()
    assert rebuilt.app("www") is table.app("www")
    assert rebuilt.app("app1") is not table.app("app1") and rebuilt.revision == 7
