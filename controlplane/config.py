"""The control plane's configuration: built by `dynomesh control`'s command line, validated here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from controlplane import names

DEFAULT_LISTEN = "127.0.0.1:5050"
# Heroku's slug size limit; a bigger upload is refused before it fills the disk.
DEFAULT_MAX_SLUG_BYTES = 500 * 1024 * 1024
# JSON request bodies are small (the largest is a config PATCH; Heroku caps config at 32 KB).
DEFAULT_MAX_BODY_BYTES = 64 * 1024


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or a bare `PORT` (loopback) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {text!r}: use HOST:PORT, e.g. 127.0.0.1:5050")
    return host, int(port)


def url_host(host: str) -> str:
    """How a client on this machine should write the listen host in a URL."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:  # listening everywhere: loopback reaches it from here
        return "[::1]" if address.version == 6 else "127.0.0.1"
    return f"[{host}]" if address.version == 6 else host


@dataclass(frozen=True)
class ControlConfig:
    home: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 5050
    # None: embedded SQLite under `home`; else postgresql://... (or sqlite:PATH).
    database_url: str | None = None
    # App hostnames are <app>.<base_domain>; `localhost` resolves to loopback on most systems.
    base_domain: str = "localhost"
    # The port routers serve apps on, for the app URLs the API shows (8080: the router default).
    router_port: int = 8080
    max_slug_bytes: int = DEFAULT_MAX_SLUG_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    change_history: int = 10_000

    def __post_init__(self) -> None:
        if not 0 <= self.listen_port <= 65535 or not 1 <= self.router_port <= 65535:
            raise ValueError("ports must be between 0 and 65535")
        if self.base_domain != "localhost":
            names.hostname(self.base_domain, allow_wildcard=False)
        if self.max_slug_bytes <= 0 or self.max_body_bytes <= 0:
            raise ValueError("size limits must be positive")
        if self.change_history < 64:
            raise ValueError("--change-history must keep at least 64 revisions")

    @property
    def slug_dir(self) -> Path:
        return self.home / "slugs"

    def api_url(self, port: int | None = None) -> str:
        """The URL a CLI on this machine uses (the real port when listening on port 0)."""
        return f"http://{url_host(self.listen_host)}:{port or self.listen_port}"

    def app_url(self, app_name: str) -> str:
        port = "" if self.router_port == 80 else f":{self.router_port}"
        return f"http://{app_name}.{self.base_domain}{port}/"

    def default_hostname(self, app_name: str) -> str:
        return f"{app_name}.{self.base_domain}"
