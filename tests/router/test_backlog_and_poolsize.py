"""The backlog (requests waiting for a dyno with room) and the idle-pool sizing, without I/O."""

import pytest

from router.backlog import Backlog
from router.poolsize import RecentPeak, surplus

pytestmark = pytest.mark.unit


def test_requests_leave_the_backlog_in_the_order_they_came_with_their_wait():
    backlog = Backlog(max_depth=10, max_wait=5.0)
    for name, at in (("a", 1.0), ("b", 1.5), ("c", 2.0)):
        assert backlog.admit(name, at)
    assert backlog.waiting == 3
    assert backlog.take(3.0) == ("a", 2.0)
    assert backlog.take(3.0) == ("b", 1.5)
    assert backlog.take(4.0) == ("c", 2.0)
    assert backlog.take(4.0) is None
    assert backlog.served == 3 and backlog.waited_total == pytest.approx(5.5)


def test_a_full_backlog_refuses_the_next_request():
    backlog = Backlog(max_depth=2, max_wait=5.0)
    assert backlog.admit("a", 0.0) and backlog.admit("b", 0.0)
    assert not backlog.admit("c", 0.0)  # H11: backlog too deep
    backlog.take(1.0)
    assert backlog.admit("c", 1.0)  # room again once one was served


def test_a_request_that_left_is_skipped_and_frees_its_place():
    backlog = Backlog(max_depth=2, max_wait=5.0)
    backlog.admit("a", 0.0)
    backlog.admit("b", 1.0)
    backlog.leave("a")  # its client went away
    assert backlog.waiting == 1
    assert backlog.admit("c", 2.0)  # "a"'s place is free
    assert backlog.take(3.0) == ("b", 2.0)  # "b" is at the front now
    assert backlog.take(3.0) == ("c", 1.0)
    assert backlog.take(3.0) is None and backlog.waiting == 0


def test_a_backlog_of_depth_zero_refuses_everything_and_bad_limits_are_named():
    assert not Backlog(max_depth=0, max_wait=1.0).admit("a", 0.0)
    with pytest.raises(ValueError, match="depth"):
        Backlog(max_depth=-1, max_wait=1.0)
    with pytest.raises(ValueError, match="wait"):
        Backlog(max_depth=1, max_wait=0)


def test_the_recent_peak_follows_the_load_up_at_once_and_down_after_the_window():
    peak = RecentPeak(window=3)
    assert peak.tick(10) == 10
    assert peak.tick(900) == 900  # a burst counts at once
    assert peak.tick(20) == 900
    assert peak.tick(20) == 900
    assert peak.tick(20) == 20  # three quiet ticks later the burst is forgotten
    with pytest.raises(ValueError):
        RecentPeak(window=0)


def test_the_surplus_is_what_the_recent_peak_does_not_need():
    assert surplus(idle=100, in_flight=0, recent_peak=30) == 70
    assert surplus(idle=100, in_flight=50, recent_peak=200) == 0
    assert surplus(idle=10, in_flight=25, recent_peak=30) == 5
