"""Dyno sizes: the memory quota a dyno of each size gets (R14 above it, R15 at twice it).

The names and quotas are Heroku's; the scheduler packs VMs by these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DynoSize:
    name: str
    memory_mb: int


SIZES: dict[str, DynoSize] = {size.name: size for size in (
    DynoSize("basic", 512),
    DynoSize("standard-1x", 512),
    DynoSize("standard-2x", 1024),
    DynoSize("performance-m", 2560),
    DynoSize("performance-l", 14336),
)}
DEFAULT_SIZE = "standard-1x"
# Heroku caps a process type at 100 dynos on these sizes; a typo like web=1000 is refused.
MAX_QUANTITY = 100


def lookup(name: str) -> DynoSize | None:
    return SIZES.get(name.lower())
