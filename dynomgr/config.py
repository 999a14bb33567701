"""The dyno manager's configuration: frozen, validated on construction, built by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dynomgr.markers import MarkerMode
from dynomgr.ports import PortRange
from dynomgr.restart import RestartConfig


@dataclass(frozen=True)
class CyclingConfig:
    # Heroku restarts every dyno once a day: after 24 h plus up to 216 minutes at random, so a
    # formation started together is not cycled together.
    after: float = 24 * 3600.0
    jitter: float = 216 * 60.0

    def __post_init__(self) -> None:
        if self.after <= 0 or self.jitter < 0:
            raise ValueError("cycling needs a positive period and a non-negative jitter")


@dataclass(frozen=True)
class AgentConfig:
    data_dir: Path
    # Admin endpoints (/healthz, /metrics); loopback only by default. None turns them off.
    admin: tuple[str, int] | None = ("127.0.0.1", 5051)
    # The host part of web dynos' addresses as reported to routers.
    advertise_host: str = "127.0.0.1"
    # Heroku R10: a web dyno must bind $PORT within 60 s of launch.
    boot_timeout: float = 60.0
    # Heroku R12: SIGKILL 30 s after SIGTERM.
    stop_timeout: float = 30.0
    # RSS sampling period. Heroku samples about every 20 s; 5 s catches runaway growth sooner
    # and one /proc pass for 500 dynos costs a few milliseconds.
    memory_interval: float = 5.0
    # Heroku R15: killed above 2x the quota.
    memory_kill_ratio: float = 2.0
    cycling: CyclingConfig | None = field(default_factory=CyclingConfig)
    restart: RestartConfig = field(default_factory=RestartConfig)
    ports: PortRange = field(default_factory=PortRange)
    marker: MarkerMode = MarkerMode.AUTO
    # How often the listen watcher asks the kernel for listening ports while dynos boot: the
    # bound on how late `up` is reported after a dyno calls listen().
    readiness_interval: float = 0.005
    # Between health-check attempts while a dyno with a health_check path boots.
    health_check_interval: float = 0.1
    # Once it is up, the app's health check runs this often on each web dyno (an app may set
    # its own interval), and this many failures in a row take the dyno out of the routers'
    # tables until a check passes (an app may set its own number). Kubernetes' probes use
    # 10 s and 3; a check gets `health_check_timeout` (at most the interval) to answer.
    health_check_every: float = 10.0
    health_check_failures: int = 3
    health_check_timeout: float = 5.0
    # Bytes of log output the agent holds for a slow consumer before dropping lines.
    log_buffer_bytes: int = 4 * 1024 * 1024
    # Heroku's log router (logplex) splits lines longer than 10000 bytes; so do we.
    max_line_bytes: int = 10_000
    # SIGTERM leaves the dynos running for the next agent (an upgrade) instead of stopping
    # them; SIGUSR2 always does, SIGINT never (docs/dynomgr.md, "Upgrading the agent").
    keep_dynos: bool = False
    # Dynos run as per-app users (None: when the agent is root).
    per_app_users: bool | None = None

    def __post_init__(self) -> None:
        positive = {
            "boot timeout": self.boot_timeout,
            "stop timeout": self.stop_timeout,
            "memory interval": self.memory_interval,
            "readiness interval": self.readiness_interval,
            "health-check interval": self.health_check_interval,
            "health-check every": self.health_check_every,
            "health-check timeout": self.health_check_timeout,
        }
        for what, value in positive.items():
            if not value > 0:
                raise ValueError(f"{what} must be > 0 seconds, got {value}")
        if self.health_check_failures < 1:
            raise ValueError(f"health-check failures must be >= 1, got {self.health_check_failures}")
        if not self.memory_kill_ratio > 1:
            raise ValueError(f"memory kill ratio must be > 1, got {self.memory_kill_ratio}")
        if self.log_buffer_bytes < 1024:
            raise ValueError("log buffer must be at least 1024 bytes")
        if self.max_line_bytes < 1:
            raise ValueError("max line bytes must be >= 1")
        if self.admin is not None and not 0 <= self.admin[1] <= 65535:
            raise ValueError(f"admin port {self.admin[1]} is not a TCP port")
