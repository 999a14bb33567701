"""Route entries derived from an app (pure): hosts, state, routable dynos (docs/feeds.md)."""

from __future__ import annotations

from router.routes import parse_app
from controlplane.feeds.routes import RouteFacts, route_entry
from controlplane.store.models import ObservedState, TakeOut
from tests.controlplane.test_planner import dyno
import pytest

pytestmark = pytest.mark.unit

UP, STARTING, CRASHED = ObservedState.UP, ObservedState.STARTING, ObservedState.CRASHED


def facts(*dynos, release=True, web=2, maintenance=False, domains=()) -> RouteFacts:
    return RouteFacts("hello", maintenance, ("hello.localhost", *domains), release, web,
                      tuple(dynos))


def test_an_app_without_a_release_is_blank():
    assert route_entry(facts(release=False))["state"] == "blank"


def test_web_scaled_to_zero():
    assert route_entry(facts(web=0))["state"] == "scaled_to_zero"
    assert route_entry(facts(dyno("web.1"), web=0))["state"] == "scaled_to_zero"


def test_running_lists_only_routable_web_dynos_in_number_order():
    entry = route_entry(facts(dyno("web.3"), dyno("web.1"), dyno("web.2", state=STARTING),
                              dyno("web.4", take_out=TakeOut.STOP),
                              dyno("web.1", release=2, serving=False)))
    assert entry["state"] == "running"
    assert [d["name"] for d in entry["dynos"]] == ["web.1", "web.3"]
    assert all(d["address"].startswith("10.0.0.1:") for d in entry["dynos"])


def test_booting_while_web_dynos_start_and_none_is_routable():
    assert route_entry(facts(dyno("web.1", state=STARTING), dyno("web.2", state=None))) == {
        "name": "hello", "hosts": ["hello.localhost"], "maintenance": False,
        "state": "booting", "dynos": []}


def test_booting_before_the_scheduler_made_any_dyno_and_while_old_ones_are_taken_out():
    assert route_entry(facts())["state"] == "booting"
    assert route_entry(facts(dyno("web.1", take_out=TakeOut.STOP)))["state"] == "booting"


def test_crashed_when_every_serving_web_dyno_crashed():
    assert route_entry(facts(dyno("web.1", state=CRASHED), dyno("web.2", state=CRASHED)))[
        "state"] == "crashed"
    assert route_entry(facts(dyno("web.1", state=CRASHED), dyno("web.2", state=STARTING)))[
        "state"] == "booting"


def test_web_dynos_that_no_vm_could_take_answer_h14():
    assert route_entry(facts(dyno("web.1", vm=None, state=None)))["state"] == "scaled_to_zero"


def test_hosts_start_with_the_default_and_maintenance_passes_through():
    entry = route_entry(facts(dyno("web.1"), maintenance=True,
                              domains=("*.example.test", "www.example.test")))
    assert entry["hosts"] == ["hello.localhost", "*.example.test", "www.example.test"]
    assert entry["maintenance"] is True


def test_every_entry_is_one_the_router_accepts():
    for entry in (route_entry(facts(dyno("web.1"), dyno("web.2"), domains=("*.a.test",))),
                  route_entry(facts(release=False)), route_entry(facts(web=0))):
        parsed = parse_app(entry, "apps[0]")
        assert parsed.state.value == entry["state"]
        assert [d.name for d in parsed.dynos] == [d["name"] for d in entry["dynos"]]


def test_session_affinity_is_said_only_when_the_feature_is_on():
    assert "session_affinity" not in route_entry(facts(dyno("web.1")))
    on = route_entry(RouteFacts("hello", False, ("hello.localhost",), True, 1,
                                (dyno("web.1"),), session_affinity=True))
    assert on["session_affinity"] is True and parse_app(on, "apps[0]").session_affinity
