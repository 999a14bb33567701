"""The VM pool's configuration: built from `dynomesh control`'s flags, validated here."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.pool.ec2 import Ec2Settings

PROVIDERS = ("local", "ec2")


@dataclass(frozen=True)
class PoolConfig:
    provider: str = "local"
    # Limits until `dynomesh pool:scale` sets others (kept in the store, for every node).
    min_vms: int = 0
    max_vms: int = 10
    # Memory one pool VM offers dynos: its instance type's memory less the system's share
    # (e.g. 3584 on a 4 GiB instance). Growth packs waiting dynos into VMs of this size.
    capacity_mb: int | None = None
    # A VM must stay removable (its dynos fit elsewhere) this long before it is drained.
    idle_grace: float = 300.0
    # A launched VM whose agent has not registered by then is terminated (a failed boot).
    launch_timeout: float = 600.0
    # A lost VM's row (local provider) is removed this long after it was lost; a day keeps
    # it visible across a night's incident review.
    lost_retention: float = 86400.0
    # How often the pool asks the provider what it runs (and finds instances nobody knows).
    reconcile_interval: float = 60.0
    # The control plane's URLs as pool VMs reach them (their agents' --control); empty: the
    # control node's --public-url.
    control_urls: tuple[str, ...] = ()
    ec2: Ec2Settings | None = None

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"--pool-provider must be one of {', '.join(PROVIDERS)}, got "
                             f"{self.provider!r}")
        if not 0 <= self.min_vms <= self.max_vms:
            raise ValueError(f"--pool-min ({self.min_vms}) must be between 0 and --pool-max "
                             f"({self.max_vms})")
        for name in ("idle_grace", "lost_retention"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must not be negative")
        for name in ("launch_timeout", "reconcile_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--pool-{name.replace('_', '-')} must be more than 0 seconds")
        for url in self.control_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"--pool-control-url must be an http(s):// URL, got {url!r}")
        if self.provider == "ec2":
            if self.ec2 is None:
                raise ValueError("the ec2 pool needs --ec2-launch-template, or --ec2-ami and "
                                 "--ec2-instance-type")
            if self.capacity_mb is None or self.capacity_mb <= 0:
                raise ValueError("the ec2 pool needs --pool-vm-capacity-mb: the memory one VM "
                                 "offers dynos (its instance type's memory less ~512 MB)")


def build_provider(config: PoolConfig):
    """The provider the configuration names (`ec2` imports aioboto3 only when chosen)."""
    if config.provider == "ec2":
        from controlplane.pool.ec2 import Ec2Provider
        assert config.ec2 is not None  # checked in PoolConfig
        return Ec2Provider(config.ec2)
    from controlplane.pool.provider import LocalProvider
    return LocalProvider()
