"""$PORT for web dynos: a free port from the VM's dyno range (20000–29999 by default)."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass


class PortsExhausted(Exception):
    pass


@dataclass(frozen=True)
class PortRange:
    first: int = 20000
    last: int = 29999

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last <= 65535:
            raise ValueError(f"port range {self.first}-{self.last} is not within 1-65535")

    @classmethod
    def parse(cls, text: str) -> PortRange:
        first, sep, last = text.partition("-")
        if not sep or not first.strip().isdigit() or not last.strip().isdigit():
            raise ValueError(f"port range must look like 20000-29999, got {text!r}")
        return cls(int(first), int(last))

    def __len__(self) -> int:
        return self.last - self.first + 1


class PortAllocator:
    """Hands out ports no dyno of ours holds and nothing else on the machine listens on.

    Starts at a random point of the range, so several agents sharing a machine (tests, a laptop)
    rarely probe the same ports at the same moment.
    """

    def __init__(self, ports: PortRange, rng: random.Random | None = None) -> None:
        self.range = ports
        self._rng = rng or random.Random()
        self._taken: set[int] = set()

    def allocate(self) -> int:
        size = len(self.range)
        offset = self._rng.randrange(size)
        for step in range(size):
            port = self.range.first + (offset + step) % size
            if port not in self._taken and _bindable(port):
                self._taken.add(port)
                return port
        raise PortsExhausted(
            f"no free port left in {self.range.first}-{self.range.last} "
            f"({len(self._taken)} held by dynos)"
        )

    def reserve(self, port: int) -> None:
        """Mark a port taken that an adopted dyno (started by a previous agent) listens on."""
        self._taken.add(port)

    def release(self, port: int) -> None:
        self._taken.discard(port)


def _bindable(port: int) -> bool:
    # SO_REUSEADDR like the servers dynos run, so a port with only TIME_WAIT leftovers counts
    # as free; a port something listens on does not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
