"""Router configuration: frozen, validated on construction, built by the CLI (or a test)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting the router cannot run with; the message names the flag."""


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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


def parse_networks(text: str, flag: str) -> tuple[Network, ...]:
    """`10.0.0.0/8,192.168.1.7,::1` -> networks (a bare address is a /32 or /128)."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{flag}: {part!r} is not an address or CIDR block "
                              "(e.g. 10.0.0.0/8)") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes the router accepts; beyond them it answers itself (docs/router.md, "Limits")."""

    # Heroku's router: request line 8192 bytes (else 414), header line 8192 bytes and 1000
    # header fields (else 400). The name limit keeps a field name from using a whole line.
    request_line: int = 8192
    header_line: int = 8192
    header_name: int = 1000
    headers: int = 1000
    # Heroku's limits on what a dyno sends back (else H25): the status line 8192 bytes, a
    # header line 512 KiB, a Set-Cookie line 8192 bytes (what browsers keep anyway).
    response_status_line: int = 8192
    response_header_line: int = 512 * 1024
    set_cookie_line: int = 8192

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or value < 64:
                raise ConfigError(f"{flag('max_' + item.name)}: must be a whole number of at "
                                  f"least 64, not {value!r}")

    @property
    def request_head_check(self) -> int:
        """A request head no larger than this cannot break any request limit: the request line
        and every field line fit, and more than `headers` fields need 4 bytes each ("a:" CRLF).
        Field names are checked separately (headers.FieldActions). Larger heads are checked
        field by field; smaller ones are not checked at all."""
        return min(self.request_line, self.header_line, 4 * self.headers)

    @property
    def response_head_check(self) -> int:
        """The same for response heads (whose field count is bounded by `headers` too)."""
        return min(self.response_status_line, self.response_header_line, self.set_cookie_line,
                   4 * self.headers)


@dataclass(frozen=True, slots=True)
class RouterConfig:
    listen: Endpoint = Endpoint("0.0.0.0", 8080)
    # --listen-tls: HTTPS beside the plain listener, certificates from the route entries
    # (router/tls.py); None: no TLS listener.
    listen_tls: Endpoint | None = None
    # The certificate for server names no app's certificate covers (PEM files); None: a
    # self-signed one made at start.
    tls_default_cert: Path | None = None
    tls_default_key: Path | None = None
    admin: Endpoint | None = Endpoint("127.0.0.1", 8081)  # None: no admin listener
    routes: Path | None = None  # --routes FILE: a static table
    # Heroku queues requests for a booting app up to 75 s, then H20.
    boot_queue_timeout: float = 75.0
    # Heroku gives a dyno 5 s to accept a connection (H19 after that).
    connect_timeout: float = 5.0
    # Attempts on distinct dynos for one request when connects fail (Heroku: up to 10).
    connect_attempts: int = 10
    # A dyno that refused or did not accept a connection is skipped this long (Heroku: 5 s).
    quarantine_time: float = 5.0
    # To the first response byte, counted once the request is sent (Heroku's H12: 30 s).
    # An app's entry may set its own (`request_timeout` in the routes format).
    request_timeout: float = 30.0
    # The largest request body, in bytes (0: no limit, as on Heroku): a larger Content-Length
    # gets 413 (H25) before a dyno is asked, a chunked body is cut when it grows past it.
    # An app's entry may set its own (`max_body_bytes` in the routes format).
    max_body_bytes: int = 0
    # No byte either way for this long once the response started, or while the client sends
    # its body: H15 (the dyno is idle) or H28 (the client is). Heroku's rolling 55 s window.
    idle_timeout: float = 55.0
    # A request head must arrive within this long (else 408); an idle keep-alive connection is
    # closed silently after it (Heroku and nginx both allow about a minute).
    header_timeout: float = 60.0
    # On SIGTERM, requests in flight get this long to finish before the router exits.
    drain_timeout: float = 30.0
    # Requests in flight per web dyno of an app (Heroku: 200 x web dynos). Heroku answers H11
    # beyond it at once; here more requests wait in the app's backlog, first come first
    # served, and go as requests of the app end (backlog.py).
    max_in_flight_per_dyno: int = 200
    # H11 ("Backlog too deep") only for more waiting requests than this per web dyno, or for
    # one that waited this long: a dyno that keeps up serves 1000 clients without an error.
    queue_per_dyno: int = 5000
    queue_timeout: float = 10.0
    limits: Limits = field(default_factory=Limits)
    # Idle pooled dyno connections are closed after this many seconds (nginx keepalive_timeout
    # style); longer than most app servers' own keep-alive is pointless, shorter costs connects.
    pool_idle_timeout: float = 90.0
    # Idle connections kept per dyno, at most; the housekeeping closes those beyond what the
    # dyno's peak concurrency over the last `pool_window` seconds needs (poolsize.py), so a
    # steady load opens almost no connections and a load that dropped gives them back.
    pool_max_idle: int = 1024
    pool_window: int = 10
    # Log lines are flushed at least this often (and whenever 512 are pending), so that they
    # reach stdout and the app's log stream (`dynomesh logs --tail`) within a moment.
    log_flush_interval: float = 0.25
    # Load balancers in front of the router: their X-Forwarded-Proto/-Port are kept and they
    # are not appended to X-Forwarded-For as a client.
    trusted_proxies: tuple[Network, ...] = ()
    # Every connection starts with a PROXY protocol v1 or v2 header (HAProxy's accept-proxy).
    proxy_protocol: bool = False
    # Processes serving one port (SO_REUSEPORT); 1 runs the router in this process.
    workers: int = 1
    # Join other processes listening on the same port (set for each of --workers N).
    reuse_port: bool = False
    # Which worker this process is (None: not a worker); shown in its status lines.
    worker_id: int | None = None
    # The listener's scheme as seen by apps (X-Forwarded-Proto) and in log lines.
    protocol: str = "http"
    # Connections the kernel completes and holds for accept() (listen(2)'s backlog; Linux caps
    # it at net.core.somaxconn). A burst beyond it is dropped and the clients' SYNs retried
    # after 1, 2, 4 s: seconds of latency. HAProxy sizes it from maxconn; nginx's 511 is small
    # for an edge taking thousands of connections at once.
    listen_backlog: int = 4096

    def __post_init__(self) -> None:
        for name in ("boot_queue_timeout", "connect_timeout", "quarantine_time",
                     "request_timeout", "idle_timeout", "header_timeout", "drain_timeout",
                     "pool_idle_timeout", "log_flush_interval", "queue_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{flag(name)}: must be above 0, not {value}")
        if self.connect_attempts < 1:
            raise ConfigError("--connect-attempts: must be at least 1")
        if self.max_in_flight_per_dyno < 1:
            raise ConfigError("--max-in-flight-per-dyno: must be at least 1")
        if self.max_body_bytes < 0:
            raise ConfigError("--max-body-size: must not be negative (0: no limit)")
        if self.pool_max_idle < 0:
            raise ConfigError("--pool-max-idle: must not be negative")
        if self.pool_window < 1:
            raise ConfigError("--pool-window: must be at least 1 (second)")
        if self.queue_per_dyno < 0:
            raise ConfigError("--queue-per-dyno: must not be negative")
        if not 1 <= self.listen_backlog <= 65535:
            raise ConfigError(f"--listen-backlog: 1 to 65535, not {self.listen_backlog}")
        if not 1 <= self.workers <= 256:
            raise ConfigError(f"--workers: 1 to 256, not {self.workers}")
        if (self.tls_default_cert is None) != (self.tls_default_key is None):
            raise ConfigError("--tls-default-cert and --tls-default-key go together (the "
                              "certificate chain and its private key, PEM files)")
        if self.tls_default_cert is not None and self.listen_tls is None:
            raise ConfigError("--tls-default-cert: only with --listen-tls HOST:PORT")
        if self.protocol not in ("http", "https"):
            raise ConfigError(f"protocol: http or https, not {self.protocol!r}")

    @property
    def tick(self) -> float:
        """How often the router's sweep checks deadlines (and so their precision): a quarter
        second, or a fifth of the shortest timeout when that is shorter (tests use tiny ones).
        One periodic sweep replaces a timer per request, as nginx's coarse timers do."""
        shortest = min(self.connect_timeout, self.request_timeout, self.idle_timeout,
                       self.header_timeout, self.boot_queue_timeout, self.drain_timeout)
        return max(0.005, min(0.25, shortest / 5))
