"""The control plane's configuration: built by `dynomesh control`'s command line, validated here."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from dynomesh.sysusers import enterable_by_others

from controlplane import names
from controlplane.acme.settings import AcmeSettings
from controlplane.addons import urls
from controlplane.builds.settings import (DEFAULT_MAX_SLUG_BYTES as DEFAULT_BUILD_SLUG_BYTES,
                                         DEFAULT_TIMEOUT as DEFAULT_BUILD_TIMEOUT, BuildSettings,
                                         PipOptions)
from controlplane.pool.settings import PoolConfig

DEFAULT_LISTEN = "127.0.0.1:5050"
# Heroku's slug size limit; a bigger upload is refused before it fills the disk.
DEFAULT_MAX_SLUG_BYTES = 500 * 1024 * 1024
# Where builds work as root when the build user cannot pass through the home.
ROOT_BUILDS = Path("/var/lib/dynomesh/builds")
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
    # A dyno manager silent this long is lost and its dynos are placed elsewhere (it
    # heart-beats every 5 s, so three beats missed).
    agent_timeout: float = 15.0
    # ...but not until this long after the scheduler (re)started or took over: agents need
    # time to reconnect and heart-beat after the control plane was away.
    startup_grace: float = 30.0
    # Feed followers hear at least this often (docs/feeds.md promises 5 s; they give up at 15).
    feed_heartbeat: float = 5.0
    # After every router was sent a take-out, requests already on the dyno finish in this long.
    take_out_grace: float = 2.0
    # The longest a take-out waits for routers to be sent it (a stuck one is not waited for).
    take_out_timeout: float = 10.0
    # The control plane's URL as dyno managers reach it, for slug URLs in assignments;
    # None: the URL each dyno manager itself used.
    public_url: str | None = None
    # Lines a `dynomesh logs --tail` session may fall behind before it is cut off (L11);
    # about 1.5 MB of router lines, several seconds of a very busy app.
    tail_buffer: int = 5_000
    # The PostgreSQL server add-on databases are made on, as its admin (a superuser: see
    # controlplane/addons/postgres.py); None: `addons:create postgresql` says how to give one.
    # Not in repr: its password must never reach a log.
    addons_database_url: str | None = field(default=None, repr=False)
    # Lines a log drain holds for a receiver that is slow or away before it drops them (L10).
    drain_buffer: int = 10_000
    # A drain's delivery lease: the node delivering it renews it every third of this; when
    # that node dies, another takes its drains over after this long.
    drain_lease: float = 10.0
    # PEM certificates trusted for syslog+tls and https drains besides the system's.
    drain_ca_file: Path | None = None
    # Slugs: None keeps them under `home`; s3://BUCKET/PREFIX puts them in S3 (every control
    # node of a shared store must then name the same place).
    slug_store: str | None = None
    slug_store_endpoint: str | None = None  # an S3-compatible service (or moto); None: AWS
    slug_store_region: str | None = None  # None: the AWS environment's or profile's region
    # Slugs bigger than this go to S3 as multipart uploads of parts this big, one held in
    # memory at a time (8 MiB: the AWS CLI's default; S3's minimum is 5 MiB).
    slug_part_size: int = 8 * 2**20
    # Builds (controlplane/builds/): Heroku's limits, 15 minutes and 500 MB compressed; pip's
    # index (None: PyPI) and find-links; where builds work and keep their caches (None: see
    # `build_settings`).
    build_timeout: float = DEFAULT_BUILD_TIMEOUT
    build_max_slug_bytes: int = DEFAULT_BUILD_SLUG_BYTES
    build_pip: PipOptions = PipOptions()
    builds_dir: Path | None = None
    # The VM pool: its provider, limits and timings (controlplane/pool/settings.py).
    pool: PoolConfig = PoolConfig()
    # The key apps' certificate private keys are sealed with at rest (controlplane/certs/
    # keybox.py): a file of 32 random bytes in base64, the same on every control node of one
    # store. None: `certs:add` is refused and stored certificates do not reach routers.
    certificate_key_file: Path | None = None
    # Automatic certificates (`certs:auto:enable`): the ACME directory (Let's Encrypt's by
    # default), the CA bundle trusted for it, renewal and retry timings (controlplane/acme/).
    acme: AcmeSettings = field(default_factory=AcmeSettings)
    # Seconds a session affinity signing key signs before a new one is made (30 days: far
    # longer than a browser session, so rotations break none; controlplane/keyrotation.py);
    # 0: only `dynomesh routers:keys:rotate` makes new ones.
    affinity_key_rotation: float = 30 * 86400.0

    def __post_init__(self) -> None:
        if not 0 <= self.listen_port <= 65535 or not 1 <= self.router_port <= 65535:
            raise ValueError("ports must be between 0 and 65535")
        if self.base_domain != "localhost":
            names.hostname(self.base_domain, allow_wildcard=False)
        if self.max_slug_bytes <= 0 or self.max_body_bytes <= 0:
            raise ValueError("size limits must be positive")
        if self.change_history < 64:
            raise ValueError("--change-history must keep at least 64 revisions")
        for name in ("agent_timeout", "feed_heartbeat", "take_out_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be more than 0 seconds")
        for name in ("startup_grace", "take_out_grace"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must not be negative")
        if self.affinity_key_rotation < 0:
            raise ValueError("--affinity-key-rotation must not be negative (0 turns it off)")
        if self.tail_buffer < 1:
            raise ValueError("--tail-buffer must be at least 1 line")
        if self.drain_buffer < 2:
            raise ValueError("--drain-buffer must be at least 2 lines")
        if not self.drain_lease >= 0.3:
            raise ValueError("--drain-lease must be at least 0.3 seconds")
        if self.drain_ca_file is not None and not self.drain_ca_file.is_file():
            raise ValueError(f"--drain-ca-file {self.drain_ca_file}: no such file (give a PEM "
                             "file of the CA certificates to trust for drains)")
        if self.drain_ca_file is not None:
            _check_pem_certificates(self.drain_ca_file)
        if self.public_url is not None and not self.public_url.startswith(
                ("http://", "https://")):
            raise ValueError(f"--public-url must be an http:// or https:// URL, got "
                             f"{self.public_url!r}")

        if self.slug_store is not None:
            self.s3_settings  # noqa: B018 - validates the s3:// URL
        if self.slug_store_endpoint is not None and not self.slug_store_endpoint.startswith(
                ("http://", "https://")):
            raise ValueError(f"--slug-store-endpoint must be an http:// or https:// URL, got "
                             f"{self.slug_store_endpoint!r}")
        self.build_settings()  # checks the build limits

        if self.pool.provider != "local" and not self.pool_control_urls:
            raise ValueError("pool VMs need the control plane's URL as they reach it: give "
                             "--pool-control-url URL or --public-url URL")
        if self.certificate_key_file is not None:
            self.certificate_key()  # refuses a missing or malformed file at start
        if self.addons_database_url is not None:
            try:
                urls.server_address(self.addons_database_url)
            except urls.BadUrl as exc:
                raise ValueError(f"--addons-database-url: {exc}") from None

    def certificate_key(self):
        """The CertificateKey from `certificate_key_file`, or None (KeyFileError, a
        ValueError naming the file, when it cannot be used)."""
        if self.certificate_key_file is None:
            return None
        from controlplane.certs.keybox import CertificateKey

        return CertificateKey.load(self.certificate_key_file)

    def build_settings(self) -> BuildSettings:
        """Builds work in `builds_dir`, else in the home, unless builds run as another user
        (we are root) who cannot pass through the home: then in /var/lib/dynomesh/builds/<a
        digest of the home>, so that control planes with other homes never share it."""
        root = self.builds_dir
        if root is None:
            inside = self.home / "builds"
            root = (inside if os.geteuid() != 0 or enterable_by_others(self.home) else
                    ROOT_BUILDS / hashlib.sha256(str(self.home).encode()).hexdigest()[:16])
        return BuildSettings(root, self.build_timeout, self.build_max_slug_bytes, self.build_pip)

    @property
    def pool_control_urls(self) -> tuple[str, ...]:
        """The control plane's URLs as pool VMs' agents reach them."""
        if self.pool.control_urls:
            return self.pool.control_urls
        return (self.public_url,) if self.public_url else ()

    @property
    def slug_dir(self) -> Path:
        return self.home / "slugs"

    @property
    def s3_settings(self):
        """The S3 slug store's settings (an S3Settings); only with `slug_store`."""
        from controlplane.s3multipart import MIN_PART_SIZE
        from controlplane.s3slugs import S3Location, S3Settings

        if self.slug_part_size < MIN_PART_SIZE:
            raise ValueError(f"--slug-part-size must be at least {MIN_PART_SIZE // 2**20} MiB "
                             "(S3's smallest part)")
        return S3Settings(S3Location.parse(self.slug_store or ""), self.slug_store_endpoint,
                          self.slug_store_region, self.slug_part_size)

    def api_url(self, port: int | None = None) -> str:
        """The URL a CLI on this machine uses (the real port when listening on port 0)."""
        return f"http://{url_host(self.listen_host)}:{port or self.listen_port}"

    def app_url(self, app_name: str) -> str:
        port = "" if self.router_port == 80 else f":{self.router_port}"
        return f"http://{app_name}.{self.base_domain}{port}/"

    def default_hostname(self, app_name: str) -> str:
        return f"{app_name}.{self.base_domain}"


def _check_pem_certificates(path: Path) -> None:
    """Refuse at startup, with the reason, a CA file that TLS could not use: a drain would
    otherwise fail at its first connection, or the node at start with an SSLError."""
    import ssl

    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ValueError(f"--drain-ca-file {path}: not PEM CA certificates ({reason}): give a "
                         "file of one or more -----BEGIN CERTIFICATE----- blocks") from None
