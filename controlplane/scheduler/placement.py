"""Placement: which VM a new dyno goes to. A pure policy: no I/O, an injected RNG.

The rule, in order:

1. Only VMs with room: free memory (capacity minus the quotas of the dynos already placed there)
   of at least the dyno's quota, and, for a web dyno, a free port in the VM's dyno port range.
2. Spread each app: the fewest dynos of this app on the VM first, so that losing one VM takes
   down as little of any one app as possible (Heroku spreads dynos over instances the same way).
3. Then the most free memory, to keep VMs evenly loaded.
4. Remaining ties are broken by the RNG among candidates sorted by id, so the same inputs and
   the same RNG state always give the same answer.

A dyno that fits nowhere gets `None`: it stays unplaced (shown as such by `ps`) and is placed
when a VM joins or room frees up. Placing never moves a dyno that already runs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.store.models import Dyno


@dataclass(frozen=True)
class VmRoom:
    """A ready VM and what is already placed on it."""

    id: str
    capacity_mb: int
    used_mb: int = 0
    free_ports: int = 10_000
    app_dynos: Mapping[str, int] = field(default_factory=dict)  # app id -> dynos placed here

    def __post_init__(self) -> None:
        if self.capacity_mb <= 0:
            raise ValueError(f"VM {self.id}: capacity must be positive")


@dataclass(frozen=True)
class DynoRequest:
    app_id: str
    memory_mb: int
    web: bool

    @classmethod
    def for_dyno(cls, dyno: Dyno) -> "DynoRequest":
        return cls(dyno.app_id, dyno.memory_mb, dyno.is_web)


class Placement:
    """Places dynos one after another, counting each placement against its VM."""

    def __init__(self, vms: Iterable[VmRoom], rng: random.Random) -> None:
        self._rng = rng
        self._vms = sorted(vms, key=lambda vm: vm.id)
        self._used = {vm.id: vm.used_mb for vm in self._vms}
        self._ports = {vm.id: vm.free_ports for vm in self._vms}
        self._apps = {vm.id: dict(vm.app_dynos) for vm in self._vms}

    def _fits(self, vm: VmRoom, request: DynoRequest) -> bool:
        if vm.capacity_mb - self._used[vm.id] < request.memory_mb:
            return False
        return not request.web or self._ports[vm.id] > 0

    def _rank(self, vm: VmRoom, request: DynoRequest) -> tuple[int, int]:
        return (self._apps[vm.id].get(request.app_id, 0),
                -(vm.capacity_mb - self._used[vm.id]))

    def place(self, request: DynoRequest) -> str | None:
        """The VM for this dyno (now counted as placed there), or None if none has room."""
        candidates = [vm for vm in self._vms if self._fits(vm, request)]
        if not candidates:
            return None
        best = min(self._rank(vm, request) for vm in candidates)
        chosen = self._rng.choice([vm for vm in candidates if self._rank(vm, request) == best])
        self._used[chosen.id] += request.memory_mb
        if request.web:
            self._ports[chosen.id] -= 1
        apps = self._apps[chosen.id]
        apps[request.app_id] = apps.get(request.app_id, 0) + 1
        return chosen.id

    def release(self, vm_id: str, request: DynoRequest) -> None:
        """Count a dyno leaving `vm_id` (removed in the same pass), freeing its room."""
        if vm_id not in self._used:
            return  # a lost VM: nothing to free for placement
        self._used[vm_id] -= request.memory_mb
        if request.web:
            self._ports[vm_id] += 1
        apps = self._apps[vm_id]
        apps[request.app_id] = max(0, apps.get(request.app_id, 0) - 1)
