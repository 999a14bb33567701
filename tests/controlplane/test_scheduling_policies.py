"""Take-out readiness and agent liveness: pure decisions with an injected clock."""

from __future__ import annotations

import pytest

from controlplane.feeds.progress import NODE_TIMEOUT, fleet_delivered
from controlplane.scheduler.liveness import AgentLiveness
from controlplane.scheduler.takeout import TakeOutPolicy, TakeOutTracker
from controlplane.store.models import NodeProgress

pytestmark = pytest.mark.unit


def test_a_take_out_completes_a_grace_after_every_follower_was_sent_it():
    tracker = TakeOutTracker(TakeOutPolicy(grace=2, timeout=10))
    waiting = tracker.decide("d-1", revision=7, started_at=100, delivered=6, now=101)
    assert not waiting.ready and waiting.wake_at == 110  # followers not there yet
    delivered = tracker.decide("d-1", revision=7, started_at=100, delivered=7, now=103)
    assert not delivered.ready and delivered.wake_at == 105
    assert not tracker.decide("d-1", revision=7, started_at=100, delivered=9, now=104.9).ready
    assert tracker.decide("d-1", revision=7, started_at=100, delivered=9, now=105).ready


def test_a_take_out_does_not_wait_longer_than_the_timeout_for_followers():
    tracker = TakeOutTracker(TakeOutPolicy(grace=2, timeout=10))
    assert not tracker.decide("d-1", revision=7, started_at=100, delivered=3, now=109).ready
    assert tracker.decide("d-1", revision=7, started_at=100, delivered=3, now=110).ready


def test_with_no_follower_anywhere_only_the_grace_applies():
    tracker = TakeOutTracker(TakeOutPolicy(grace=0.5, timeout=10))
    assert not tracker.decide("d-1", revision=7, started_at=100, delivered=None, now=100).ready
    assert tracker.decide("d-1", revision=7, started_at=100, delivered=None, now=100.5).ready


def test_forgotten_take_outs_start_their_grace_over():
    tracker = TakeOutTracker(TakeOutPolicy(grace=2, timeout=10))
    tracker.decide("d-1", revision=7, started_at=100, delivered=7, now=100)
    tracker.retain(set())
    assert tracker.decide("d-1", revision=7, started_at=100, delivered=7, now=101).wake_at == 103


def test_take_out_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        TakeOutPolicy(grace=-1)
    with pytest.raises(ValueError):
        TakeOutPolicy(timeout=0)


def test_fleet_progress_is_the_slowest_follower_of_any_live_node():
    nodes = [NodeProgress("a", seen_at=100, route_followers=2, route_revision=40),
             NodeProgress("b", seen_at=100, route_followers=0, route_revision=1),
             NodeProgress("dead", seen_at=100 - NODE_TIMEOUT - 1, route_followers=5,
                          route_revision=2)]
    assert fleet_delivered(50, nodes, now=100) == 40
    assert fleet_delivered(None, nodes, now=100) == 40
    assert fleet_delivered(None, nodes[1:], now=100) is None  # nobody follows
    assert fleet_delivered(30, nodes, now=100) == 30


def test_a_silent_agent_is_lost_after_the_timeout():
    liveness = AgentLiveness(timeout=15, grace=30)
    assert not liveness.is_lost(100, now=114.9, watching_since=0)
    assert liveness.is_lost(100, now=115, watching_since=0)
    assert liveness.check_at(100, watching_since=0) == 115


def test_no_agent_is_lost_during_the_grace_after_the_control_plane_starts():
    liveness = AgentLiveness(timeout=15, grace=30)
    # Last heartbeat long before this control plane started watching at t=1000.
    assert not liveness.is_lost(100, now=1029.9, watching_since=1000)
    assert liveness.check_at(100, watching_since=1000) == 1030
    assert liveness.is_lost(100, now=1030, watching_since=1000)
