"""How big the VM pool should be: a pure decision with an injected clock.

Given the pool's VMs, the memory of each dyno no VM had room for (`unplaced` in `ps`) and the
limits, `PoolPlanner.decide` says what to do now:

- **Grow** by as many VMs as the waiting dynos need: they are packed first-fit, largest first,
  into the free room of the pool's VMs (launching ones take them once their agents register;
  one that just registered may not have been given them yet), then into new VMs of
  `capacity_mb` each. A dyno larger than a whole VM is never launched for
  (it is named in the notes instead). The pool also grows to `min_vms`. Never above `max_vms`.
  Draining VMs are taken back first: cheaper and faster than a new VM.
- **Shrink** one VM at a time, only while nothing waits or launches: an active VM whose dynos
  all fit in the other VMs' free room (an empty VM trivially) is removable; once it has stayed
  removable for `idle_grace` it is drained (its dynos get twins elsewhere, which serve before
  its own stop: scheduler/drain.py), or terminated at once if it is empty. Never below
  `min_vms`.
- **Terminate** a drained VM (no dynos left), a lost one (its agent fell silent: its dynos were
  already placed elsewhere), one whose agent never registered within `launch_timeout` (a boot
  that failed), and one an operator removed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from controlplane.store.pool import PoolVmState


@dataclass(frozen=True)
class PoolLimits:
    min_vms: int = 0
    # A runaway bound: a formation typo must not launch a fleet.
    max_vms: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.min_vms <= self.max_vms:
            raise ValueError(f"pool limits must satisfy 0 <= min <= max, got min={self.min_vms} "
                             f"max={self.max_vms}")


@dataclass(frozen=True)
class PoolPolicy:
    capacity_mb: int  # what one new VM offers dynos (its memory less the system's share)
    # A VM must stay removable this long before it is drained: load that comes and goes
    # within minutes does not make VMs come and go with it.
    idle_grace: float = 300.0
    # An instance whose agent has not registered by then failed to boot (EC2 boots in about a
    # minute; installing dynomesh adds a little).
    launch_timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.capacity_mb <= 0:
            raise ValueError("a pool VM's capacity must be more than 0 MB")
        if self.idle_grace < 0 or self.launch_timeout <= 0:
            raise ValueError("the idle grace must be >= 0 and the launch timeout > 0 seconds")


@dataclass(frozen=True)
class PoolVmView:
    """One pool VM as the policy sees it."""

    vm_id: str
    state: PoolVmState
    capacity_mb: int
    launched_at: float
    registered: bool = False  # its agent registered (a `vms` row exists)
    lost: bool = False  # its agent fell silent past the agent timeout
    dynos_mb: tuple[int, ...] = ()  # memory of each dyno placed on it

    @property
    def used_mb(self) -> int:
        return sum(self.dynos_mb)


@dataclass(frozen=True)
class PoolDecision:
    launch: int = 0
    activate: tuple[str, ...] = ()  # launching VMs whose agent registered
    undrain: tuple[str, ...] = ()  # draining VMs taken back (dynos wait)
    drain: tuple[str, ...] = ()
    terminate: tuple[tuple[str, str], ...] = ()  # (VM id, why)
    wake_at: float = math.inf  # decide again by then even if nothing changes
    notes: tuple[str, ...] = ()

    @property
    def idle(self) -> bool:
        return not (self.launch or self.activate or self.undrain or self.drain or self.terminate)


def pack(sizes: Sequence[int], free: list[int], capacity: int) -> tuple[int, list[int]]:
    """First-fit decreasing: put each size into the first bin of `free` room it fits, opening
    new bins of `capacity` as needed. Returns (new bins opened, sizes that fit no bin)."""
    free = list(free)
    opened = 0
    unfit = []
    for size in sorted(sizes, reverse=True):
        slot = next((i for i, room in enumerate(free) if room >= size), None)
        if slot is None:
            if size > capacity:
                unfit.append(size)
                continue
            free.append(capacity)
            opened += 1
            slot = len(free) - 1
        free[slot] -= size
    return opened, unfit


@dataclass
class PoolPlanner:
    """Decides; remembers since when each VM has been removable (the idle grace's clock)."""

    policy: PoolPolicy
    _removable_since: dict[str, float] = field(default_factory=dict)

    def decide(self, vms: Sequence[PoolVmView], waiting_mb: Sequence[int], limits: PoolLimits,
               now: float) -> PoolDecision:
        terminate, wake_at = self._to_terminate(vms, now)
        gone = {vm_id for vm_id, _ in terminate}
        live = [vm for vm in vms if vm.vm_id not in gone]
        activate = tuple(vm.vm_id for vm in live
                         if vm.state is PoolVmState.LAUNCHING and vm.registered)
        if waiting_mb:
            self._removable_since.clear()
            return self._grow(live, waiting_mb, limits, terminate, activate, wake_at)
        launch = max(0, limits.min_vms - _counted(live))
        if launch or any(vm.state is PoolVmState.LAUNCHING and not vm.registered for vm in live):
            self._removable_since.clear()
            return PoolDecision(launch=launch, activate=activate, terminate=tuple(terminate),
                                wake_at=wake_at)
        drain, empty, shrink_wake = self._shrink(live, limits, now)
        return PoolDecision(activate=activate, drain=drain,
                            terminate=tuple(terminate) + empty, wake_at=min(wake_at, shrink_wake))

    def _to_terminate(self, vms: Sequence[PoolVmView],
                      now: float) -> tuple[list[tuple[str, str]], float]:
        out: list[tuple[str, str]] = []
        wake_at = math.inf
        for vm in vms:
            if vm.state is PoolVmState.TERMINATING:
                out.append((vm.vm_id, "removed"))
            elif vm.lost:
                out.append((vm.vm_id, "lost: its agent fell silent"))
            elif vm.state is PoolVmState.DRAINING and not vm.dynos_mb:
                out.append((vm.vm_id, "drained"))
            elif vm.state is PoolVmState.LAUNCHING and not vm.registered:
                deadline = vm.launched_at + self.policy.launch_timeout
                if now >= deadline:
                    out.append((vm.vm_id, f"its agent did not register within "
                                          f"{self.policy.launch_timeout:.0f}s"))
                else:
                    wake_at = min(wake_at, deadline)
        return out, wake_at

    def _grow(self, live: list[PoolVmView], waiting_mb: Sequence[int], limits: PoolLimits,
              terminate: list[tuple[str, str]], activate: tuple[str, ...],
              wake_at: float) -> PoolDecision:
        undrain = tuple(vm.vm_id for vm in live if vm.state is PoolVmState.DRAINING)
        # Room the waiting dynos will get without a new VM: every live VM's free room (one
        # that just registered may not have been given them yet), launching ones whole.
        coming = [vm.capacity_mb - vm.used_mb for vm in live if not vm.lost]
        needed, unfit = pack(waiting_mb, coming, self.policy.capacity_mb)
        counted = _counted(live) + len(undrain)
        wanted = max(needed, limits.min_vms - counted)
        launch = max(0, min(wanted, limits.max_vms - counted))
        notes = []
        if unfit:
            notes.append(f"{len(unfit)} dyno(s) need more than a whole VM "
                         f"({self.policy.capacity_mb} MB): no VM is launched for them")
        if launch < wanted:
            notes.append(f"the pool is at its maximum ({limits.max_vms} VMs): "
                         f"{wanted - launch} more VM(s) would be needed")
        return PoolDecision(launch=launch, activate=activate, undrain=undrain,
                            terminate=tuple(terminate), wake_at=wake_at, notes=tuple(notes))

    def _shrink(self, live: list[PoolVmView], limits: PoolLimits,
                now: float) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], float]:
        if any(vm.state is PoolVmState.DRAINING for vm in live):
            return (), (), math.inf  # one drain at a time
        active = [vm for vm in live if vm.state is PoolVmState.ACTIVE and vm.registered]
        if _counted(live) <= limits.min_vms:
            self._removable_since.clear()
            return (), (), math.inf
        removable = [vm for vm in active if self._fits_elsewhere(vm, active)]
        ids = {vm.vm_id for vm in removable}
        for vm_id in list(self._removable_since):
            if vm_id not in ids:
                del self._removable_since[vm_id]
        if not removable:
            return (), (), math.inf
        for vm in removable:
            self._removable_since.setdefault(vm.vm_id, now)
        best = min(removable, key=lambda vm: (vm.used_mb, self._removable_since[vm.vm_id],
                                              vm.vm_id))
        due = self._removable_since[best.vm_id] + self.policy.idle_grace
        if now < due:
            return (), (), due
        del self._removable_since[best.vm_id]
        if not best.dynos_mb:
            return (), ((best.vm_id, f"idle for {self.policy.idle_grace:.0f}s"),), math.inf
        return (best.vm_id,), (), math.inf

    @staticmethod
    def _fits_elsewhere(vm: PoolVmView, active: list[PoolVmView]) -> bool:
        if not vm.dynos_mb:
            return True
        room = [other.capacity_mb - other.used_mb for other in active if other is not vm]
        opened, unfit = pack(vm.dynos_mb, room, 0)
        return opened == 0 and not unfit


def _counted(live: Sequence[PoolVmView]) -> int:
    """VMs that count towards the limits: launching and active ones."""
    return sum(1 for vm in live if vm.state in (PoolVmState.LAUNCHING, PoolVmState.ACTIVE))
