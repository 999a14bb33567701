"""Parsing the assignments document (the assignment feed's entry shape)."""

from __future__ import annotations

import json

import pytest

from dynomgr.assignments import AssignmentsError, dump_assignment, parse_assignments

pytestmark = pytest.mark.unit

SCHEMES = frozenset({"file", "http", "https"})
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def entry(**overrides):
    base = {
        "kind": "formation",
        "name": "web.1",
        "app": "hello",
        "type": "web",
        "release": 7,
        "slug": {"url": "file:///srv/slugs/hello-v7.tgz", "sha256": SHA},
        "env": {"GREETING": "hi"},
        "memory_mb": 512,
        "health_check": None,
    }
    base.update(overrides)
    return base


def parse(*entries):
    return parse_assignments(json.dumps({"dynos": list(entries)}), SCHEMES)


def test_the_documented_example_parses():
    result = parse(entry())
    assert result.errors == ()
    dyno = result.dynos[("hello", "web.1")]
    assert (dyno.app, dyno.name, dyno.type, dyno.release) == ("hello", "web.1", "web", 7)
    assert dyno.slug.url == "file:///srv/slugs/hello-v7.tgz" and dyno.slug.sha256 == SHA
    assert dict(dyno.env) == {"GREETING": "hi"}
    assert dyno.memory_mb == 512 and dyno.health_check is None and dyno.is_web


def test_optional_fields_default_to_herokus_values_and_round_trip():
    minimal = {k: v for k, v in entry().items() if k in ("name", "app", "type", "release", "slug")}
    dyno = parse(minimal).dynos[("hello", "web.1")]
    assert dyno.kind == "formation" and dyno.memory_mb == 512 and dict(dyno.env) == {}
    assert parse(dump_assignment(dyno)).dynos[("hello", "web.1")] == dyno


def test_two_apps_may_both_have_a_web_1():
    result = parse(entry(), entry(app="other"))
    assert set(result.dynos) == {("hello", "web.1"), ("other", "web.1")}


def test_any_field_change_makes_assignments_unequal():
    a = parse(entry()).dynos[("hello", "web.1")]
    assert parse(entry()).dynos[("hello", "web.1")] == a
    for change in ({"release": 8}, {"env": {"GREETING": "yo"}}, {"memory_mb": 1024}, {"health_check": "/up"}):
        assert parse(entry(**change)).dynos[("hello", "web.1")] != a
    other_sha = "0" * 64
    assert parse(entry(slug={"url": "file:///x.tgz", "sha256": other_sha})).dynos[("hello", "web.1")] != a


def test_the_same_slug_from_another_control_node_is_no_change():
    # Each control node hands out its own download URL; the slug is its SHA-256.
    a = parse(entry()).dynos[("hello", "web.1")]
    moved = entry(slug={"url": "http://10.0.0.2:5050/slugs/s-1/download", "sha256": SHA})
    assert parse(moved).dynos[("hello", "web.1")] == a


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kind": "batch"}, "unknown kind 'batch'"),
        ({"kind": "one-off"}, "a one-off entry needs its command"),
        ({"kind": "one-off", "command": "ls", "timeout": 0}, "timeout must be seconds"),
        ({"app": "Hello"}, "app 'Hello' is not a valid app name"),
        ({"type": "we b"}, "type 'we b' is not a valid process type"),
        ({"name": "worker.1"}, "name 'worker.1' must be <type>.<number>, like web.1"),
        ({"name": "web.0"}, "must be <type>.<number>"),
        ({"release": "7"}, "release must be a positive integer, got '7'"),
        ({"release": True}, "release must be a positive integer"),
        ({"slug": "file:///x.tgz"}, "slug must be an object"),
        ({"slug": {"url": "s3://bucket/x.tgz", "sha256": SHA}}, r"scheme s3:// is not supported \(use file://, http://, https://\)"),
        ({"slug": {"url": "file:///x.tgz", "sha256": "abc"}}, "slug sha256 must be 64 hex digits"),
        ({"env": {"GREETING": 5}}, "env GREETING must be a string, got int"),
        ({"env": {"BAD-NAME": "x"}}, "env name 'BAD-NAME' is not a valid"),
        ({"memory_mb": 0}, "memory_mb must be a positive integer"),
        ({"health_check": "health"}, "health_check must be null or a path"),
    ],
)
def test_a_bad_entry_is_one_error_naming_it_and_the_others_still_count(overrides, message):
    result = parse(entry(name="web.2"), entry(**overrides))
    assert set(result.dynos) == {("hello", "web.2")}
    assert len(result.errors) == 1
    text = str(result.errors[0])
    assert text.startswith("dynos[1]")
    assert "\n" not in text
    assert __import__("re").search(message, text), text


def test_bad_entries_name_their_dyno_so_that_a_running_one_is_kept():
    result = parse(entry(release=0))
    assert result.rejected_keys == {("hello", "web.1")}
    assert str(result.errors[0]).startswith("dynos[0] (hello web.1): release")


def test_a_dyno_listed_twice_counts_once():
    result = parse(entry(), entry(release=8))
    assert result.dynos[("hello", "web.1")].release == 7
    assert "listed twice" in str(result.errors[0])


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"dynos": [', "not valid JSON: Expecting value at line 1 column 12"),
        ("[]", 'expected a JSON object with a "dynos" list'),
        ('{"dynos": {}}', 'expected a JSON object with a "dynos" list'),
    ],
)
def test_a_bad_document_is_one_error(text, message):
    with pytest.raises(AssignmentsError) as caught:
        parse_assignments(text, SCHEMES)
    assert str(caught.value) == message
