"""What a VM pool provider does, and how its failures look.

A provider launches a VM for a pool VM id (the agent on it registers under that id with the
token in its boot script), lists the instances it runs for this pool, and terminates them.
`local` launches nothing: its VMs are the dyno managers that register (`dynomesh up`, or
agents an operator starts). `ec2` runs EC2 instances through aioboto3 (`ec2.py`).

A failed call raises `ProviderError` with the provider's own error code (EC2's
`InsufficientInstanceCapacity`, `RequestLimitExceeded`, `AuthFailure`, ...), which the pool
shows as is (`dynomesh pool`); `retryable` says whether trying again soon may work (throttling,
capacity, a network error) or needs an operator (credentials, a bad AMI, an account limit);
either way the pool backs off and tries again, so a fixed cause heals without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ProviderError(Exception):
    def __init__(self, code: str, message: str, *, operation: str, retryable: bool) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.code = code
        self.message = message
        self.operation = operation
        self.retryable = retryable


@dataclass(frozen=True)
class Instance:
    """One instance the provider runs, as it describes it."""

    instance_id: str
    state: str  # the provider's word: pending, running, shutting-down, terminated, ...
    vm_id: str | None  # the pool VM id it was launched for (its `dynomesh:vm` tag)
    address: str | None  # its private address
    instance_type: str | None = None
    launched_at: str | None = None

    @property
    def gone(self) -> bool:
        return self.state in ("shutting-down", "terminated")


@dataclass(frozen=True)
class Boot:
    """What a new VM needs to join: its id, its dynomgr token, the control plane's URLs."""

    vm_id: str
    token: str
    control_urls: tuple[str, ...]
    capacity_mb: int


class Provider(Protocol):
    name: str
    can_launch: bool  # False: the pool only watches the VMs that register

    async def launch(self, boot: Boot) -> str:
        """Start a VM that boots into a dyno manager; return its instance id."""

    async def describe(self) -> list[Instance]:
        """Every instance this pool runs (tagged with its name), whatever its state."""

    async def terminate(self, instance_ids: list[str]) -> None:
        """Terminate these instances (already gone ones are no error)."""

    async def close(self) -> None:
        """Let go of connections."""


class LocalProvider:
    """The dyno managers that register are the pool; nothing to launch or terminate."""

    name = "local"
    can_launch = False

    async def launch(self, boot: Boot) -> str:
        raise ProviderError("NotSupported", "the local provider launches no VMs: start a dyno "
                            "manager with a dynomgr token", operation="launch", retryable=False)

    async def describe(self) -> list[Instance]:
        return []

    async def terminate(self, instance_ids: list[str]) -> None:
        return None

    async def close(self) -> None:
        return None
