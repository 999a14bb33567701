"""Quarantine and RetryPolicy: small pure policies with an injected clock (no I/O)."""

import pytest

from router.quarantine import Quarantine
from router.retry import Retry, RetryPolicy

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_dyno_is_skipped_for_the_quarantine_time_then_used_again():
    clock = Clock()
    quarantine = Quarantine(5.0, clock)
    quarantine.fail("web.1")
    assert quarantine.usable(["web.1", "web.2"]) == ["web.2"]
    assert "web.1" in quarantine
    clock.now += 4.99
    assert quarantine.usable(["web.1", "web.2"]) == ["web.2"]
    clock.now += 0.01
    assert quarantine.usable(["web.1", "web.2"]) == ["web.1", "web.2"]
    assert "web.1" not in quarantine


def test_when_all_are_quarantined_the_one_quarantined_longest_ago_is_tried():
    clock = Clock()
    quarantine = Quarantine(5.0, clock)
    quarantine.fail("web.2")
    clock.now += 1
    quarantine.fail("web.1")
    clock.now += 1
    quarantine.fail("web.3")
    assert quarantine.usable(["web.1", "web.2", "web.3"]) == ["web.2"]
    quarantine.fail("web.2")  # fails again: now the most recent
    assert quarantine.usable(["web.1", "web.2", "web.3"]) == ["web.1"]


def test_a_dyno_that_accepts_again_leaves_quarantine_at_once():
    quarantine = Quarantine(5.0, Clock())
    quarantine.fail("web.1")
    quarantine.release("web.1")
    assert quarantine.usable(["web.1"]) == ["web.1"] and not quarantine.members


def test_expire_forgets_ended_quarantines():
    clock = Clock()
    quarantine = Quarantine(5.0, clock)
    quarantine.fail("a")
    clock.now += 3
    quarantine.fail("b")
    clock.now += 2.5
    assert quarantine.expire() == 1 and list(quarantine.members) == ["b"]
    assert quarantine.usable([]) == []


@pytest.mark.parametrize("attempts, untried, decision", [
    (1, 2, Retry.ANOTHER_DYNO), (9, 1, Retry.ANOTHER_DYNO), (10, 5, Retry.GIVE_UP),
    (3, 0, Retry.GIVE_UP),
])
def test_connect_failures_try_another_dyno_up_to_the_limit(attempts, untried, decision):
    assert RetryPolicy(10).after_connect_failure(attempts, untried) is decision


BASE = dict(method=b"GET", has_body=False, reused=True, response_started=False, retried=False)


@pytest.mark.parametrize("change, decision", [
    ({}, Retry.FRESH_CONNECTION),
    ({"method": b"PUT"}, Retry.FRESH_CONNECTION),  # idempotent
    ({"method": b"POST"}, Retry.GIVE_UP),  # not idempotent: might happen twice
    ({"has_body": True}, Retry.GIVE_UP),  # the body is gone
    ({"reused": False}, Retry.GIVE_UP),  # a fresh connection closing is the dyno's answer
    ({"response_started": True}, Retry.GIVE_UP),  # the dyno had started to answer
    ({"retried": True}, Retry.GIVE_UP),  # once only
])
def test_a_request_is_sent_again_only_when_nothing_can_happen_twice(change, decision):
    assert RetryPolicy().after_connection_closed(**(BASE | change)) is decision
