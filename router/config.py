"""Router configuration: frozen, validated on construction, built by the CLI (or a test)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A setting the router cannot run with; the message names the flag."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, flag: str) -> Endpoint:
        """`0.0.0.0:8080`, `:8080` (all interfaces), `[::1]:8080`, `localhost:0`."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit() or int(port_text) > 65535:
            raise ConfigError(f"{flag}: expected HOST:PORT, e.g. 0.0.0.0:8080, not {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ConfigError(f"{flag}: {host!r} is not an IPv6 address") from None
        return cls(host or "0.0.0.0", int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RouterConfig:
    listen: Endpoint = Endpoint("0.0.0.0", 8080)
    admin: Endpoint | None = Endpoint("127.0.0.1", 8081)  # None: no admin listener
    routes: Path | None = None  # --routes FILE: a static table
    # Heroku queues requests for a booting app up to 75 s, then H20.
    boot_queue_timeout: float = 75.0
    # Heroku gives a dyno 5 s to accept a connection (H19 after that).
    connect_timeout: float = 5.0
    # Attempts on distinct dynos for one request when connects fail (Heroku: up to 10).
    connect_attempts: int = 10
    # Idle pooled dyno connections are closed after this many seconds (nginx keepalive_timeout
    # style); longer than most app servers' own keep-alive is pointless, shorter costs connects.
    pool_idle_timeout: float = 90.0
    # Idle connections kept per dyno; beyond this a finished connection is closed.
    pool_max_idle: int = 64
    # Log lines are flushed at least this often (and whenever 512 are pending).
    log_flush_interval: float = 1.0
    # The listener's scheme as seen by apps (X-Forwarded-Proto) and in log lines.
    protocol: str = "http"
    backlog: int = 1024

    def __post_init__(self) -> None:
        for name in ("boot_queue_timeout", "connect_timeout", "pool_idle_timeout",
                     "log_flush_interval"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"--{name.replace('_', '-')}: must be above 0, not {value}")
        if self.connect_attempts < 1:
            raise ConfigError("--connect-attempts: must be at least 1")
        if self.pool_max_idle < 0:
            raise ConfigError("--pool-max-idle: must not be negative")
        if self.protocol not in ("http", "https"):
            raise ConfigError(f"protocol: http or https, not {self.protocol!r}")
