"""HealthPolicy: N failed checks in a row take a running web dyno out; one pass brings it back."""

from __future__ import annotations

import pytest

from dynomgr.assignments import dump_assignment, parse_entry
from dynomgr.events import DynoRef, StateChange
from dynomgr.health import Check, HealthPolicy, Verdict
from dynomgr.state import DynoState

pytestmark = pytest.mark.unit


def verdicts(policy: HealthPolicy, statuses) -> list[Verdict]:
    return [policy.observe(Check(status)) for status in statuses]


def test_the_nth_failure_in_a_row_makes_it_unhealthy_once():
    policy = HealthPolicy("/health", failures=3, timeout=5)
    assert verdicts(policy, [503, 503, 503, 503]) == [
        Verdict.SAME, Verdict.SAME, Verdict.UNHEALTHY, Verdict.SAME]
    assert policy.reason() == "GET /health → 503 ×4"


def test_a_pass_between_failures_starts_the_count_again():
    policy = HealthPolicy("/health", failures=2, timeout=5)
    assert verdicts(policy, [500, 200, 500, 204, 500]) == [Verdict.SAME] * 5
    assert not policy.unhealthy


def test_one_pass_brings_an_unhealthy_dyno_back():
    policy = HealthPolicy("/health", failures=1, timeout=5)
    assert verdicts(policy, [None, 302, 302]) == [Verdict.UNHEALTHY, Verdict.HEALTHY,
                                                  Verdict.SAME]


def test_a_dyno_adopted_unhealthy_comes_back_on_its_first_pass():
    policy = HealthPolicy("/health", failures=3, timeout=5, unhealthy=True)
    assert verdicts(policy, [200]) == [Verdict.HEALTHY]


def test_no_answer_counts_as_a_failure_and_says_so():
    policy = HealthPolicy("/up", failures=2, timeout=2.5)
    verdicts(policy, [None, None])
    assert policy.reason() == "GET /up → no HTTP answer in 2.5 s ×2"


@pytest.mark.parametrize("status, passed", [(200, True), (399, True), (400, False),
                                            (199, False), (None, False)])
def test_2xx_and_3xx_pass_as_at_boot(status, passed):
    assert Check(status).passed is passed


def test_failures_below_one_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        HealthPolicy("/health", failures=0, timeout=1)


def test_a_change_of_health_is_worded_for_the_apps_log():
    ref = DynoRef("hello", "web.1", "web", 3, "i-1")
    out = StateChange(ref, DynoState.UP, DynoState.UP, 1.0, unhealthy="GET /health → 503 ×3")
    back = StateChange(ref, DynoState.UP, DynoState.UP, 2.0)
    assert out.words() == ("Health check failed: GET /health → 503 ×3; out of the routers' "
                           "tables until a check passes")
    assert back.words() == "Health check passed; back in the routers' tables"


def test_the_assignment_carries_the_apps_interval_and_failures():
    entry = {"id": "d-1", "kind": "formation", "app": "hello", "name": "web.1", "type": "web",
             "release": 1, "slug": {"url": "file:///s.tgz", "sha256": "a" * 64},
             "health_check": "/health", "health_check_interval": 2,
             "health_check_failures": 4}
    assignment = parse_entry(entry, frozenset({"file"}))
    assert (assignment.health_check_interval, assignment.health_check_failures) == (2.0, 4)
    assert parse_entry(dump_assignment(assignment), frozenset({"file"})) == assignment
