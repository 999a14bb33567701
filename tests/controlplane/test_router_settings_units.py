"""Per-app router settings (pure): the rules `config:router` and the API share, and how the
settings reach the route entry and the assignment entries."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controlplane.feeds.assignments import assignment_entries
from controlplane.feeds.routes import RouteFacts, route_entry
from controlplane.routersettings import (InvalidSetting, RouterSettings, describe, from_flag,
                                         validated)
from controlplane.store.models import Assignment
from dynomesh.bytesize import ByteSizeError, format_byte_size, parse_byte_size
from router.routes import parse_app
from tests.controlplane.test_planner import dyno

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, size", [("10MB", 10 * 1024 ** 2), ("512k", 512 * 1024),
                                        ("1 GiB", 1024 ** 3), ("1048576", 1048576),
                                        ("1.5KB", 1536), ("7b", 7)])
def test_sizes_are_read_with_units_as_powers_of_1024(text, size):
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", ["ten", "10 TB", "-1MB", "0.3B", ""])
def test_a_size_that_cannot_be_read_names_the_accepted_forms(text):
    with pytest.raises(ByteSizeError, match="B, KB, MB or GB|whole number"):
        parse_byte_size(text)


def test_sizes_are_shown_in_the_largest_whole_unit():
    assert [format_byte_size(n) for n in (10 * 1024 ** 2, 1536, 2048, 7)] == [
        "10 MB", "1536 B", "2 KB", "7 B"]


@pytest.mark.parametrize("flag, setting, value", [
    ("120", "request_timeout", 120), ("2.5", "health_check_interval", 2.5),
    ("10MB", "max_body_bytes", 10 * 1024 ** 2), ("/health?deep=1", "health_check_path",
                                                 "/health?deep=1"),
    ("3", "health_check_failures", 3), ("default", "request_timeout", None),
    ("Default", "health_check_path", None)])
def test_flags_become_the_settings_json_values(flag, setting, value):
    assert from_flag(setting, flag) == value


@pytest.mark.parametrize("setting, value, words", [
    ("request_timeout", 0, "from 1 to 3600 seconds"),
    ("request_timeout", 3601, "from 1 to 3600 seconds"),
    ("request_timeout", True, "from 1 to 3600 seconds"),
    ("max_body_bytes", 1.5, "a whole number"),
    ("health_check_path", "health", "starting with /"),
    ("health_check_path", "/a b", "without spaces"),
    ("health_check_failures", 0, "from 1 to 100"),
    ("color", 1, "no router setting named 'color'")])
def test_bad_values_are_refused_with_the_range(setting, value, words):
    with pytest.raises(InvalidSetting, match=words):
        validated(setting, value)


def test_a_flag_that_is_not_a_number_says_so():
    with pytest.raises(InvalidSetting, match="must be a number, or `default`"):
        from_flag("request_timeout", "2min")
    with pytest.raises(InvalidSetting, match="--max-body-size: .* is not a size"):
        from_flag("max_body_bytes", "lots")


def test_unset_values_show_as_the_default():
    assert describe("request_timeout", None) == "default"
    assert describe("health_check_path", None) == "none"
    assert describe("request_timeout", 120.0) == "120 s"


def test_only_health_fields_concern_the_dyno_managers():
    settings = RouterSettings(request_timeout=60)
    assert not settings.health_fields_differ(settings.changed({"request_timeout": 5}))
    assert settings.health_fields_differ(settings.changed({"health_check_path": "/h"}))


def facts(*dynos, **settings) -> RouteFacts:
    return RouteFacts("hello", False, ("hello.localhost",), True, 2, tuple(dynos), **settings)


def test_the_route_entry_carries_the_apps_settings_only_when_set_and_routers_read_them():
    assert "request_timeout" not in route_entry(facts(dyno("web.1")))
    entry = route_entry(facts(dyno("web.1"), request_timeout=120.0, max_body_bytes=1024))
    route = parse_app(entry, "apps[0]")
    assert (route.request_timeout, route.max_body_bytes) == (120.0, 1024)


def test_an_unhealthy_dyno_leaves_the_route_entry_and_all_unhealthy_is_booting():
    sick = replace(dyno("web.2"), unhealthy="GET /health → 503 ×3")
    entry = route_entry(facts(dyno("web.1"), sick))
    assert [d["name"] for d in entry["dynos"]] == ["web.1"]
    assert route_entry(facts(sick))["state"] == "booting"  # requests wait for a pass


def test_web_dynos_of_the_formation_get_the_health_check_others_do_not():
    web, worker = dyno("web.1"), dyno("worker.1")
    entries = assignment_entries(
        [Assignment(d, "hello", "s-1", "sha256:" + "ab" * 32, {}, "/health", None, 4)
         for d in (web, worker)], "http://cp")
    assert entries[web.id]["health_check"] == "/health"
    assert entries[web.id]["health_check_failures"] == 4
    assert "health_check_interval" not in entries[web.id]  # the dyno manager's flag decides
    assert entries[worker.id]["health_check"] is None
