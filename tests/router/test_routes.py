"""Route entries: the routes file / route feed shape, validated with JSON paths in errors."""

import json

import pytest

from router.routes import AppState, RoutesError, parse_routes
from router.source import RoutesFile
from router.table import RouteTable

pytestmark = pytest.mark.unit

EXAMPLE = {"apps": [{"name": "app1", "hosts": ["app1.localhost", "*.example.com"],
                     "maintenance": False, "state": "running",
                     "dynos": [{"name": "web.1", "address": "127.0.0.1:9001"}]}]}


def test_the_documented_example_parses():
    document = parse_routes(EXAMPLE)
    (route,) = document.apps
    assert route.name == "app1"
    assert route.hosts == ("app1.localhost", "*.example.com")
    assert route.state is AppState.RUNNING and route.maintenance is False
    assert [(d.name, d.host, d.port) for d in route.dynos] == [("web.1", "127.0.0.1", 9001)]
    assert route.request_timeout is None and document.revision == 0


def test_unknown_fields_are_ignored_for_newer_control_planes():
    entry = dict(EXAMPLE["apps"][0], region="eu", dynos=[
        {"name": "web.1", "address": "127.0.0.1:9001", "size": "standard-2x"}])
    document = parse_routes({"apps": [entry], "generated_by": "future"})
    assert document.apps[0].dynos[0].port == 9001


def test_defaults_state_running_no_maintenance_no_dynos():
    (route,) = parse_routes({"apps": [{"name": "a", "hosts": ["a.localhost"]}]}).apps
    assert route.state is AppState.RUNNING and not route.maintenance and route.dynos == ()


def test_optional_request_timeout_and_revision():
    entry = {"name": "a", "hosts": ["a.localhost"], "request_timeout": 90}
    document = parse_routes({"revision": 12, "apps": [entry]})
    assert document.apps[0].request_timeout == 90.0 and document.revision == 12


def test_hosts_are_lower_cased_and_ipv6_addresses_accepted():
    entry = {"name": "a", "hosts": ["A.LocalHost"],
             "dynos": [{"name": "web.1", "address": "[::1]:9001"}]}
    (route,) = parse_routes({"apps": [entry]}).apps
    assert route.hosts == ("a.localhost",) and route.dynos[0].host == "::1"
    assert route.dynos[0].address == "[::1]:9001"


def bad(document) -> str:
    with pytest.raises(RoutesError) as caught:
        RouteTable.from_document(parse_routes(document))
    return str(caught.value)


def apps(*entries):
    return {"apps": [{"name": f"app{i}", "hosts": [f"app{i}.localhost"]} for i in range(2)]
            + list(entries)}


@pytest.mark.parametrize("dyno, message", [
    ({"name": "web.1", "address": "127.0.0.1"}, "apps[2].dynos[0].address: not host:port"),
    ({"name": "web.1", "address": "127.0.0.1:70000"}, "apps[2].dynos[0].address: not host:port"),
    ({"name": "web.1", "address": 9001}, "apps[2].dynos[0].address: not host:port"),
    ({"name": "web.1"}, "apps[2].dynos[0].address: missing"),
    ({"address": "127.0.0.1:1"}, "apps[2].dynos[0].name: missing or empty"),
    ("web.1", "apps[2].dynos[0]: expected an object"),
])
def test_dyno_errors_name_the_json_path(dyno, message):
    assert bad(apps({"name": "c", "hosts": ["c.localhost"], "dynos": [dyno]})).startswith(message)


@pytest.mark.parametrize("entry, message", [
    ({"hosts": ["c.localhost"]}, "apps[2].name: missing or empty"),
    ({"name": "c"}, "apps[2].hosts: missing"),
    ({"name": "c", "hosts": "c.localhost"}, "apps[2].hosts: expected a list"),
    ({"name": "c", "hosts": ["bad host"]}, "apps[2].hosts[0]: not a host name"),
    ({"name": "c", "hosts": ["*.*.x.com"]}, "apps[2].hosts[0]: not a host name"),
    ({"name": "c", "hosts": ["c.localhost"], "state": "sleeping"}, "apps[2].state: unknown state"),
    ({"name": "c", "hosts": ["c.localhost"], "maintenance": "yes"},
     "apps[2].maintenance: expected true or false"),
    ({"name": "c", "hosts": ["c.localhost"], "request_timeout": 0},
     "apps[2].request_timeout: must be a number of seconds above 0"),
    ({"name": "c", "hosts": ["c.localhost"], "request_timeout": True},
     "apps[2].request_timeout: expected a number"),
])
def test_app_errors_name_the_json_path(entry, message):
    assert bad(apps(entry)).startswith(message)


def test_document_errors():
    assert bad([]).startswith('expected a JSON object')
    assert bad({}).startswith("apps: missing or not a list")
    assert bad({"apps": [], "revision": "7"}).startswith("revision: expected a number")


def test_two_apps_claiming_one_host_are_both_named():
    message = bad(apps({"name": "thief", "hosts": ["app1.localhost"]}))
    assert message.startswith("apps[2].hosts[0]:")
    assert "'app1'" in message and "'thief'" in message


def test_routes_file_loads_a_table(tmp_path):
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(EXAMPLE))
    table = RoutesFile(path).load()
    assert table.lookup(b"x.example.com").name == "app1"


def test_routes_file_that_is_not_json_says_where(tmp_path):
    path = tmp_path / "routes.json"
    path.write_text('{"apps": [\n  {"name": "a",}\n]}')
    with pytest.raises(RoutesError, match=r"not valid JSON: .* line 2 column"):
        RoutesFile(path).load()


def test_missing_routes_file_says_so(tmp_path):
    with pytest.raises(RoutesError, match="cannot read .*nope.json"):
        RoutesFile(tmp_path / "nope.json").load()
