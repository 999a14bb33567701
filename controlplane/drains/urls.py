"""Drain URLs, without I/O: what `drains:add` accepts, and how a URL is shown.

Three kinds, as on Heroku (devcenter "Log Drains"):

    syslog://logs.example.com:514        RFC 5424 over TCP, octet-counted (RFC 6587 3.4.1)
    syslog+tls://logs.example.com:6514   the same inside TLS (RFC 5425)
    https://user:secret@logs.example.com/ingest?key=abc
                                         batched POSTs of the same frames (application/logplex-1)

A drain URL often carries a credential (a password in the user part, an API key in the query
or in the path, as Loggly's `/bulk/TOKEN/` and Sumo Logic's `/receiver/v1/http/CODE`):
everything the API and the CLI show goes through `masked()`, which hides all three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Without a port: 514, syslog's traditional port, and 6514, syslog over TLS (RFC 5425 4.1).
SYSLOG_PORT = 514
SYSLOG_TLS_PORT = 6514
MAX_URL_LENGTH = 2048
MASK = "****"
# RFC 1123 host names (one label or more: `localhost` and in-house names are fine here).
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
# A path segment that looks like a key rather than a word: 16 characters or more of a token's
# alphabet (base64, hex, a UUID), letters and digits mixed.
_KEY_LIKE = re.compile(r"^(?=[^/]*[0-9])(?=[^/]*[A-Za-z])[A-Za-z0-9_=+.~%-]{16,}$")


class DrainKind(Enum):
    SYSLOG = "syslog"
    SYSLOG_TLS = "syslog+tls"
    HTTPS = "https"

    @property
    def tls(self) -> bool:
        return self is not DrainKind.SYSLOG


class BadDrainUrl(ValueError):
    """The URL cannot be a drain; the message says why and what would do."""


@dataclass(frozen=True)
class DrainUrl:
    kind: DrainKind
    host: str
    port: int
    url: str = field(repr=False)  # as given (credentials included): only the delivery uses it

    def masked(self) -> str:
        return masked(self.url)


def parse(text: str) -> DrainUrl:
    """A drain URL checked for what delivery needs; `BadDrainUrl` otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise BadDrainUrl("give the drain's URL: syslog+tls://HOST:PORT, syslog://HOST:PORT or "
                          "https://HOST/PATH")
    text = text.strip()
    if len(text) > MAX_URL_LENGTH:
        raise BadDrainUrl(f"a drain URL is at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise BadDrainUrl("a drain URL has no spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BadDrainUrl(f"{masked(text)} is not a valid URL ({exc})") from None
    kinds = {k.value: k for k in DrainKind}
    kind = kinds.get(parts.scheme.lower())
    if kind is None:
        raise BadDrainUrl(f"{parts.scheme or 'a URL without a scheme'}:// drains are not "
                          "supported: use syslog+tls://HOST:PORT, syslog://HOST:PORT or "
                          "https://HOST/PATH")
    host = (parts.hostname or "").lower()
    if not host:
        raise BadDrainUrl(f"{masked(text)} names no host: e.g. {kind.value}://logs.example.com"
                          + (":6514" if kind is DrainKind.SYSLOG_TLS else ""))
    _check_host(host, text)
    if kind is DrainKind.HTTPS:
        return DrainUrl(kind, host, port or 443, text)
    if parts.username or parts.password:
        raise BadDrainUrl("a syslog drain takes no user or password: syslog has no place for "
                          "them (use an https:// drain for a receiver that needs one)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BadDrainUrl(f"a syslog drain is HOST:PORT only, without a path or query: "
                          f"{kind.value}://{host}:{port or SYSLOG_PORT}")
    default = SYSLOG_TLS_PORT if kind.tls else SYSLOG_PORT
    return DrainUrl(kind, host, port or default, text)


def _check_host(host: str, text: str) -> None:
    if host.startswith("[") or ":" in host:
        return  # an IPv6 literal; urlsplit checked its brackets
    if len(host) > 253 or not _HOST.match(host):
        raise BadDrainUrl(f"{masked(text)}: {host!r} is not a valid host name")


def canonical(text: str) -> str:
    """The URL in one spelling for each receiver: scheme and host in lower case, the default
    port written out, an empty path as `/`. Two drains of an app with the same canonical URL
    are one receiver twice. A URL that does not parse is its own canonical form."""
    try:
        target = parse(text)
        parts = urlsplit(target.url)
    except (BadDrainUrl, ValueError):
        return text
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"[{target.host}]" if ":" in target.host else target.host
    netloc = f"{userinfo}@{host}:{target.port}" if userinfo else f"{host}:{target.port}"
    return urlunsplit((target.kind.value, netloc, parts.path or "/", parts.query, ""))


def masked(text: str) -> str:
    """The URL with its password, query values and key-like path segments replaced by
    `****`, for showing."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        # A lone user part is often the secret itself (`https://TOKEN@host`), so it goes too.
        netloc = f"{user}:{MASK}@{hostport}" if has_password else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, MASK) for key, _ in pairs], safe="*")
    path = "/".join(MASK if _KEY_LIKE.match(segment) else segment
                    for segment in parts.path.split("/"))
    return urlunsplit((parts.scheme, netloc, path, query, ""))
