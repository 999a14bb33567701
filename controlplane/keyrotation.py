"""The routers' session affinity signing key, replaced on a period (`--affinity-key-rotation`).

`KeyRotation` is the policy, pure: given how old the signing key is, whether a new one is due
and how long to wait before looking again. `rotate_keys` is the loop every control node runs:
the store makes the new key only if it is still due inside its write transaction, so nodes
that look at once rotate once. `dynomesh routers:keys:rotate` rotates at any moment besides.

A rotation keeps the previous key for verification (controlplane/store/affinity.py), and
routers sign a cookie of the previous key again on its next response, so a period much longer
than a browser session breaks nothing; only a client idle across two rotations is balanced
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from controlplane.store.affinity import AffinityKeyStore

log = logging.getLogger("dynomesh.control")


@dataclass(frozen=True)
class KeyRotation:
    period: float  # seconds a signing key signs before a new one is made
    longest_wait: float = 3600.0  # look again at least this often (a clock that jumped, a restore)

    def __post_init__(self) -> None:
        if not self.period > 0:
            raise ValueError("--affinity-key-rotation must be more than 0 days (or 0 to turn it off)")

    def due(self, age: float | None) -> bool:
        """`age`: the signing key's age in seconds; None: there is no key yet."""
        return age is None or age >= self.period

    def wait(self, age: float | None) -> float:
        """Seconds until the key in use is due (at least 1, at most `longest_wait`)."""
        left = 0.0 if age is None else self.period - age
        return min(self.longest_wait, max(1.0, left))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def rotate_keys(keys: AffinityKeyStore, rotation: KeyRotation,
                      clock: Callable[[], datetime] = utc_now) -> None:
    """Until cancelled: a new signing key whenever the one in use is `rotation.period` old."""
    while True:
        rotated, age = await keys.rotate_if_due(rotation.due, clock())
        if rotated is not None:
            log.info("control: session affinity signing key %s made (every %.0f days)",
                     rotated.id, rotation.period / 86400)
        await asyncio.sleep(rotation.wait(age))
