"""The pool's sizing policy (pure, with the clock as an argument)."""

from __future__ import annotations

import pytest

from controlplane.pool.policy import (PoolLimits, PoolPlanner, PoolPolicy, PoolVmView, pack)
from controlplane.store.pool import PoolVmState

pytestmark = pytest.mark.unit

ACTIVE, LAUNCHING, DRAINING = PoolVmState.ACTIVE, PoolVmState.LAUNCHING, PoolVmState.DRAINING


def planner(**policy) -> PoolPlanner:
    return PoolPlanner(PoolPolicy(**{"capacity_mb": 1024, "idle_grace": 60.0,
                                     "launch_timeout": 600.0, **policy}))


def vm(vm_id: str, state=ACTIVE, *dynos: int, registered: bool = True, lost: bool = False,
       launched_at: float = 0.0, capacity: int = 1024) -> PoolVmView:
    return PoolVmView(vm_id, state, capacity, launched_at, registered=registered, lost=lost,
                      dynos_mb=dynos)


LIMITS = PoolLimits(0, 10)


def test_waiting_dynos_launch_as_many_vms_as_they_need_packed_largest_first():
    decision = planner().decide([], [512, 512, 512, 1024], LIMITS, now=0)
    assert decision.launch == 3  # 1024 | 512+512 | 512


def test_room_on_the_pools_vms_counts_before_new_ones():
    vms = [vm("vm-a", ACTIVE, 512), vm("vm-b", LAUNCHING, registered=False)]
    assert planner().decide(vms, [512, 512, 512], LIMITS, now=0).launch == 0
    assert planner().decide(vms, [512, 512, 512, 512], LIMITS, now=0).launch == 1


def test_growth_stops_at_the_maximum_and_says_how_many_more_were_needed():
    decision = planner().decide([vm("vm-a", ACTIVE, 1024)], [512] * 6, PoolLimits(0, 2), now=0)
    assert decision.launch == 1
    assert decision.notes == ("the pool is at its maximum (2 VMs): 2 more VM(s) would be "
                              "needed",)


def test_a_dyno_bigger_than_a_vm_launches_nothing_and_is_named():
    decision = planner().decide([], [2560], LIMITS, now=0)
    assert decision.launch == 0
    assert "1 dyno(s) need more than a whole VM (1024 MB)" in decision.notes[0]


def test_the_pool_grows_to_its_minimum_without_waiting_dynos():
    assert planner().decide([vm("vm-a")], [], PoolLimits(3, 5), now=0).launch == 2


def test_a_draining_vm_is_taken_back_before_launching():
    vms = [vm("vm-a", ACTIVE, 1024), vm("vm-b", DRAINING, 512)]
    decision = planner().decide(vms, [512], LIMITS, now=0)
    assert (decision.undrain, decision.launch) == (("vm-b",), 0)


def test_a_registered_launching_vm_becomes_active():
    decision = planner().decide([vm("vm-a", LAUNCHING)], [], LIMITS, now=0)
    assert decision.activate == ("vm-a",)


def test_a_vm_whose_dynos_fit_elsewhere_is_drained_only_after_the_idle_grace():
    p = planner()
    vms = [vm("vm-a", ACTIVE, 512), vm("vm-b", ACTIVE, 256)]
    first = p.decide(vms, [], LIMITS, now=100)
    assert first.drain == () and first.wake_at == 160
    assert p.decide(vms, [], LIMITS, now=159).drain == ()
    assert p.decide(vms, [], LIMITS, now=160).drain == ("vm-b",)  # the least used


def test_load_that_returns_within_the_grace_restarts_its_clock():
    p = planner()
    light = [vm("vm-a", ACTIVE, 512), vm("vm-b", ACTIVE, 256)]
    p.decide(light, [], LIMITS, now=0)
    p.decide(light, [512], LIMITS, now=30)  # dynos waited meanwhile
    assert p.decide(light, [], LIMITS, now=61).drain == ()  # removable again from 61 on
    assert p.decide(light, [], LIMITS, now=120).drain == ()
    assert p.decide(light, [], LIMITS, now=121).drain == ("vm-b",)


def test_an_empty_vm_past_the_grace_is_terminated_without_a_drain():
    p = planner()
    vms = [vm("vm-a", ACTIVE, 512), vm("vm-b", ACTIVE)]
    p.decide(vms, [], LIMITS, now=0)
    decision = p.decide(vms, [], LIMITS, now=60)
    assert (decision.drain, decision.terminate) == ((), (("vm-b", "idle for 60s"),))


def test_no_vm_is_removable_when_its_dynos_fit_nowhere_else():
    vms = [vm("vm-a", ACTIVE, 768), vm("vm-b", ACTIVE, 512)]
    p = planner()
    p.decide(vms, [], LIMITS, now=0)
    assert p.decide(vms, [], LIMITS, now=1000).idle


def test_the_pool_never_shrinks_below_its_minimum():
    p = planner()
    vms = [vm("vm-a", ACTIVE, 256), vm("vm-b", ACTIVE)]
    p.decide(vms, [], PoolLimits(2, 5), now=0)
    assert p.decide(vms, [], PoolLimits(2, 5), now=1000).idle


def test_one_drain_at_a_time():
    p = planner(idle_grace=0)
    vms = [vm("vm-a", DRAINING, 256), vm("vm-b", ACTIVE, 256), vm("vm-c", ACTIVE)]
    assert p.decide(vms, [], LIMITS, now=0).drain == ()


def test_a_drained_vm_a_lost_one_and_a_boot_that_never_registered_are_terminated():
    vms = [vm("vm-a", DRAINING), vm("vm-b", ACTIVE, 512, lost=True),
           vm("vm-c", LAUNCHING, registered=False, launched_at=0),
           vm("vm-d", LAUNCHING, registered=False, launched_at=500)]
    decision = planner().decide(vms, [512], LIMITS, now=600)
    assert decision.terminate == (("vm-a", "drained"), ("vm-b", "lost: its agent fell silent"),
                                  ("vm-c", "its agent did not register within 600s"))
    assert decision.launch == 0  # vm-d's room is coming
    assert decision.wake_at == 1100  # vm-d's own deadline


def test_a_lost_vm_is_replaced_when_its_dynos_need_one():
    vms = [vm("vm-a", ACTIVE, 512, lost=True)]
    decision = planner().decide(vms, [512], LIMITS, now=0)
    assert decision.terminate[0][0] == "vm-a" and decision.launch == 1


def test_packing_is_first_fit_decreasing():
    assert pack([300, 700, 500, 500], [], 1000) == (2, [])
    assert pack([300], [200, 400], 1000) == (0, [])
    assert pack([2000, 10], [], 1000) == (1, [2000])


def test_limits_and_policy_refuse_nonsense():
    with pytest.raises(ValueError, match="0 <= min <= max"):
        PoolLimits(3, 2)
    with pytest.raises(ValueError, match="capacity"):
        PoolPolicy(capacity_mb=0)
