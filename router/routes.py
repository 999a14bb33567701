"""Route entries: the documented shape of one app in the routing table, and its parser.

The same entry shape arrives from a `--routes` file and, later, from the control plane's route
feed (a snapshot of entries, then deltas that each replace one app's whole entry). See
docs/routes-format.md. Parsing is strict about what the router needs and lenient about what it
does not know: unknown fields are ignored so that a newer control plane can add some.

Every error names the JSON path of the offending value (`apps[2].dynos[0].address: not
host:port`), so an operator can find it in a large file.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from router.affinity import AffinityKeyError, SigningKey, parse_keys


class AppState(enum.Enum):
    """An app's condition as the control plane sees it; decides what the router answers."""

    RUNNING = "running"
    BLANK = "blank"  # no release yet -> H81
    SCALED_TO_ZERO = "scaled_to_zero"  # no web dynos -> H14
    CRASHED = "crashed"  # every web dyno crashed -> H10
    BOOTING = "booting"  # requests queue until a dyno is up, else H20


class RoutesError(ValueError):
    """A routes document (file or feed message) that the router refuses, with the JSON path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class DynoRoute:
    """One routable web dyno of an app."""

    name: str  # "web.1"; shown as dyno= in the router log
    host: str  # IP address or hostname, without brackets
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RouteCertificate:
    """A certificate the router presents for the app's hosts it covers (TLS listener, SNI).

    Both are PEM text: `chain` the leaf first, then its intermediates; `key` the leaf's private
    key, never shown (not in repr, logs or the admin endpoints)."""

    chain: str
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AppRoute:
    """One app's whole entry. Immutable: an update builds a new entry and swaps it in."""

    name: str
    hosts: tuple[str, ...]  # lower case; "*.example.com" is a one-label wildcard
    state: AppState = AppState.RUNNING
    maintenance: bool = False
    dynos: tuple[DynoRoute, ...] = ()
    # Seconds to the first response byte (Heroku's fixed 30 s is H12); None = the router default.
    request_timeout: float | None = None
    # Certificates for the app's hosts on the TLS listener (router/certs.py picks by SNI).
    certificates: tuple[RouteCertificate, ...] = ()
    # ACME HTTP-01 challenges to answer for the app's hosts: (token, key authorization) pairs
    # (router/challenges.py). Empty for nearly every app, nearly always.
    acme_challenges: tuple[tuple[str, str], ...] = ()
    # The largest request body this app takes (larger: 413, H25); None = the router default.
    max_body_bytes: int | None = None
    # Heroku's http-session-affinity: a signed cookie pins a client to a dyno (affinity.py).
    session_affinity: bool = False


# RFC 1123 host names: labels of letters, digits and hyphens, not starting or ending with a hyphen.
# Underscores are accepted too because real internal names (and some DNS records) carry them.
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_MAX_HOSTNAME = 253
# RFC 8555 §8.3: a token is base64url (and a key authorization is a token, '.', a thumbprint).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_KEY_AUTHORIZATION = re.compile(r"[A-Za-z0-9_-]{1,256}\.[A-Za-z0-9_-]{1,256}")


def is_hostname(text: str) -> bool:
    return len(text) <= _MAX_HOSTNAME and _HOSTNAME.fullmatch(text) is not None


def parse_host_pattern(raw: Any, path: str) -> str:
    """An app hostname: an exact name, or `*.` followed by a name (matches exactly one label)."""
    if not isinstance(raw, str):
        raise RoutesError(path, "not a string")
    host = raw.strip().lower().rstrip(".")
    name = host[2:] if host.startswith("*.") else host
    if not is_hostname(name):
        raise RoutesError(path, f"not a host name or *.wildcard: {raw!r}")
    return host


def parse_address(raw: Any, path: str) -> tuple[str, int]:
    """`host:port`, `1.2.3.4:port` or `[::1]:port` -> (host, port)."""
    if not isinstance(raw, str):
        raise RoutesError(path, "not host:port")
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise RoutesError(path, "not host:port")
    port = int(port_text)
    if not 0 < port < 65536:
        raise RoutesError(path, f"not host:port (port {port} out of range 1-65535)")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise RoutesError(path, f"not host:port (bad IPv6 address {host})") from None
        return host[1:-1], port
    if not is_hostname(host.lower()):
        raise RoutesError(path, "not host:port")
    return host.lower(), port


def _field(obj: dict, key: str, path: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """obj[key] if it has the JSON type `kind`, `default` if absent; else a RoutesError."""
    value = obj.get(key, default)
    if value is default:
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # A JSON true/false is never a number here, although bool is an int in Python.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise RoutesError(f"{path}.{key}" if path else key, f"expected {_kind_name(kinds)}")
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", bool: "true or false", list: "a list", int: "a number",
             float: "a number", dict: "an object"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def parse_dyno(raw: Any, path: str) -> DynoRoute:
    if not isinstance(raw, dict):
        raise RoutesError(path, "expected an object with name and address")
    name = _field(raw, "name", path, str, None)
    if not name:
        raise RoutesError(f"{path}.name", "missing or empty")
    if "address" not in raw:
        raise RoutesError(f"{path}.address", "missing")
    host, port = parse_address(raw["address"], f"{path}.address")
    return DynoRoute(name=name, host=host, port=port)


def parse_app(raw: Any, path: str) -> AppRoute:
    """One app entry; `path` is its place in the document, e.g. `apps[2]`."""
    if not isinstance(raw, dict):
        raise RoutesError(path, "expected an object")
    name = _field(raw, "name", path, str, None)
    if not name:
        raise RoutesError(f"{path}.name", "missing or empty")
    hosts_raw = _field(raw, "hosts", path, list, None)
    if hosts_raw is None:
        raise RoutesError(f"{path}.hosts", "missing")
    hosts = tuple(dict.fromkeys(
        parse_host_pattern(h, f"{path}.hosts[{i}]") for i, h in enumerate(hosts_raw)))
    state_raw = _field(raw, "state", path, str, "running")
    try:
        state = AppState(state_raw)
    except ValueError:
        choices = ", ".join(s.value for s in AppState)
        raise RoutesError(f"{path}.state", f"unknown state {state_raw!r} (one of {choices})") from None
    maintenance = _field(raw, "maintenance", path, bool, False)
    dynos_raw = _field(raw, "dynos", path, list, [])
    dynos = tuple(parse_dyno(d, f"{path}.dynos[{i}]") for i, d in enumerate(dynos_raw))
    seen: dict[str, int] = {}
    for i, dyno in enumerate(dynos):
        if dyno.name in seen:
            raise RoutesError(f"{path}.dynos[{i}].name",
                              f"dyno {dyno.name!r} listed twice (also dynos[{seen[dyno.name]}])")
        seen[dyno.name] = i
    timeout = _field(raw, "request_timeout", path, (int, float), None)
    if timeout is not None and not timeout > 0:
        raise RoutesError(f"{path}.request_timeout", "must be a number of seconds above 0")
    challenges_raw = _field(raw, "acme_challenges", path, list, [])
    challenges = tuple(parse_challenge(c, f"{path}.acme_challenges[{i}]")
                       for i, c in enumerate(challenges_raw))
    certificates_raw = _field(raw, "certificates", path, list, [])
    certificates = tuple(parse_certificate(c, f"{path}.certificates[{i}]")
                         for i, c in enumerate(certificates_raw))
    max_body = _field(raw, "max_body_bytes", path, int, None)
    if max_body is not None and max_body < 1:
        raise RoutesError(f"{path}.max_body_bytes", "must be a number of bytes above 0")
    affinity = _field(raw, "session_affinity", path, bool, False)
    return AppRoute(name=name, hosts=hosts, state=state, maintenance=maintenance, dynos=dynos,
                    request_timeout=None if timeout is None else float(timeout),
                    max_body_bytes=max_body, certificates=certificates,
                    acme_challenges=challenges, session_affinity=affinity)


def parse_certificate(raw: Any, path: str) -> RouteCertificate:
    """`{"chain": PEM, "key": PEM}`: only the shape is checked here; the PEM itself is loaded
    when the TLS listener indexes it (router/certs.py), which reports a bad one by path."""
    if not isinstance(raw, dict):
        raise RoutesError(path, "expected an object with chain and key (PEM text)")
    values = []
    for key, begins in (("chain", "-----BEGIN CERTIFICATE-----"), ("key", "-----BEGIN ")):
        value = _field(raw, key, path, str, None)
        if not value or begins not in value:
            # Never echo the value: it may be a private key.
            raise RoutesError(f"{path}.{key}", f"missing, or not PEM text ({begins}...)")
        values.append(value)
    return RouteCertificate(chain=values[0], key=values[1])


def parse_challenge(raw: Any, path: str) -> tuple[str, str]:
    """`{"token": T, "key_authorization": "T.<thumbprint>"}` -> (T, key authorization)."""
    if not isinstance(raw, dict):
        raise RoutesError(path, "expected an object with token and key_authorization")
    token = _field(raw, "token", path, str, None)
    if token is None or not _TOKEN.fullmatch(token):
        raise RoutesError(f"{path}.token", "missing or not base64url")
    answer = _field(raw, "key_authorization", path, str, None)
    if answer is None or not _KEY_AUTHORIZATION.fullmatch(answer) \
            or not answer.startswith(token + "."):
        raise RoutesError(f"{path}.key_authorization",
                          "missing, or not the token, '.', and a base64url thumbprint")
    return token, answer


@dataclass(frozen=True, slots=True)
class RoutesDocument:
    """A whole table's worth of entries: a `--routes` file or a feed snapshot."""

    apps: tuple[AppRoute, ...]
    revision: int = 0
    # Session affinity signing keys, newest first (affinity.py); router-wide, not per app.
    affinity_keys: tuple[SigningKey, ...] = ()


def parse_affinity_keys(raw: Any) -> tuple[SigningKey, ...]:
    """The document's `affinity_keys` (absent: none), or a RoutesError naming the path."""
    if raw is None:
        return ()
    try:
        return parse_keys(raw)
    except AffinityKeyError as error:
        raise RoutesError(error.path, str(error).partition(": ")[2]) from None


def parse_routes(raw: Any) -> RoutesDocument:
    """`{"revision": R, "apps": [...]}` -> entries. Duplicate hosts are the table's to find."""
    if not isinstance(raw, dict):
        raise RoutesError("", 'expected a JSON object {"apps": [...]}')
    apps_raw = raw.get("apps")
    if not isinstance(apps_raw, list):
        raise RoutesError("apps", "missing or not a list")
    revision = _field(raw, "revision", "", int, 0)
    if revision < 0:
        raise RoutesError("revision", "must not be negative")
    apps = tuple(parse_app(a, f"apps[{i}]") for i, a in enumerate(apps_raw))
    return RoutesDocument(apps=apps, revision=revision,
                          affinity_keys=parse_affinity_keys(raw.get("affinity_keys")))
