"""Placement: spread each app across VMs, within each VM's memory and ports (pure, no I/O)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from controlplane.scheduler.placement import DynoRequest, Placement, VmRoom

pytestmark = pytest.mark.unit

WEB = DynoRequest("hello", 512, web=True)
WORKER = DynoRequest("hello", 512, web=False)


def place_all(placement: Placement, requests) -> list[str | None]:
    return [placement.place(r) for r in requests]


def test_an_apps_dynos_spread_across_vms_before_doubling_up():
    vms = [VmRoom(f"vm-{i}", 8192) for i in range(3)]
    placed = place_all(Placement(vms, random.Random(1)), [WEB] * 6)
    assert Counter(placed) == {"vm-0": 2, "vm-1": 2, "vm-2": 2}
    assert set(placed[:3]) == {"vm-0", "vm-1", "vm-2"}  # one on each before any gets two


def test_spreading_counts_the_dynos_already_placed():
    vms = [VmRoom("vm-a", 8192, used_mb=1024, app_dynos={"hello": 2}),
           VmRoom("vm-b", 8192)]
    assert place_all(Placement(vms, random.Random(0)), [WEB, WEB]) == ["vm-b", "vm-b"]


def test_other_apps_do_not_count_for_spreading_but_their_memory_does():
    vms = [VmRoom("vm-a", 4096, used_mb=3072, app_dynos={"other": 6}),
           VmRoom("vm-b", 4096, used_mb=512, app_dynos={"other": 1})]
    # Both have no `hello` dyno; vm-b has more free memory.
    assert Placement(vms, random.Random(0)).place(WEB) == "vm-b"


def test_memory_capacity_is_respected_by_dyno_size():
    vms = [VmRoom("small", 1024), VmRoom("big", 4096)]
    placement = Placement(vms, random.Random(0))
    big = DynoRequest("hello", 2560, web=False)  # performance-m
    assert placement.place(big) == "big"
    assert placement.place(big) is None  # 1536 MB left on big, 1024 on small
    assert place_all(placement, [WORKER] * 5).count(None) == 0
    assert placement.place(WORKER) is None  # both full: 1024 + 4096 - 2560 = 5 x 512


def test_an_unplaceable_dyno_gets_none_and_takes_no_room():
    placement = Placement([VmRoom("vm-1", 512)], random.Random(0))
    assert placement.place(DynoRequest("hello", 1024, web=False)) is None
    assert placement.place(WORKER) == "vm-1"


def test_no_vms_means_nothing_is_placed():
    assert Placement([], random.Random(0)).place(WEB) is None


def test_web_dynos_need_a_free_port_workers_do_not():
    placement = Placement([VmRoom("vm-1", 8192, free_ports=1)], random.Random(0))
    assert placement.place(WEB) == "vm-1"
    assert placement.place(WEB) is None
    assert placement.place(WORKER) == "vm-1"


def test_the_same_inputs_and_rng_state_give_the_same_placements():
    def run(seed):
        vms = [VmRoom(f"vm-{i}", 2048) for i in (3, 1, 2)]
        return place_all(Placement(vms, random.Random(seed)), [WEB, WORKER] * 5)

    assert run(7) == run(7)
    assert len({tuple(run(seed)) for seed in range(20)}) > 1  # ties really are random


def test_released_room_can_be_placed_again():
    placement = Placement([VmRoom("vm-1", 512, free_ports=1)], random.Random(0))
    assert placement.place(WEB) == "vm-1"
    assert placement.place(WEB) is None
    placement.release("vm-1", WEB)
    assert placement.place(WEB) == "vm-1"


def test_a_vm_needs_a_positive_capacity():
    with pytest.raises(ValueError, match="capacity"):
        VmRoom("vm-1", 0)
