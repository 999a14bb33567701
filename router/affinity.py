"""Session affinity (Heroku's `http-session-affinity`): a signed cookie pins a client to a dyno.

For an app whose route entry says `"session_affinity": true`, the router answers the first
request of a client with a cookie naming the dyno that served it; later requests carrying a
valid cookie go to that dyno while it is routable in this router's table. A cookie that is
missing, forged, signed by an unknown key, made for another app, or naming a dyno that left
(or came back at another address: a restarted dyno is another dyno) is ignored: the request is
balanced as usual (P2C) and the response sets a new cookie. Heroku: "When new dynos are created
or old dynos are removed, attached clients will be provided with an updated cookie that points
at an available dyno."

The cookie's value is `<key id>.<MAC>.<dyno name>`, the MAC an HMAC-SHA256 (RFC 2104) over the
app, the dyno's name and its address under the key `key id` names. Binding the app means a
cookie cannot be moved to another app; binding the address means it names one run of a dyno;
the address itself is not in the cookie, so clients learn nothing of the network inside.

Signing keys come from the route feed (or the `--routes` file): a list, newest first; the
newest signs, every one verifies, so a key rotation breaks no live session: a cookie signed by
the previous key is honoured, and its next response carries one signed by the new key.

`Roster` is the policy for one app's dynos under one set of keys, pure: every valid cookie
value is worked out once when the app's entry or the keys change (a few per dyno), so checking
a request's cookie is one dict lookup, and setting one is a precomputed line. Nothing here is
on the path of an app without the feature: its backend holds no roster.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

COOKIE_NAME = b"dynomesh-session-affinity"
# RFC 6265 §4.1.1: a session cookie (no Expires/Max-Age) for the whole site, out of scripts'
# reach, sent on top-level navigations from elsewhere (Lax) but not on cross-site subrequests.
_ATTRIBUTES = b"; Path=/; HttpOnly; SameSite=Lax"
_SECURE = b"; Secure"  # only over https: a browser drops a Secure cookie set over plain http
_CONTEXT = b"dynomesh-session-affinity\x00"
_NAME_IS = COOKIE_NAME + b"="
_BEFORE_NAME = frozenset(b": \t;")  # what may stand before a cookie's name in a Cookie field  # the MAC covers this purpose, not only the data

# Key ids and dyno names travel inside the cookie: RFC 6265 cookie-octets without "." (the
# separator) for ids; a dyno name that is not cookie-safe is never pinned.
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DYNO_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
MIN_SECRET_BYTES = 16  # 128 bits; the control plane makes 32

# What the exchange notes in its flags when the request's cookie already names the dyno it was
# sent to under the newest key: its response needs no Set-Cookie. (Above RequestRewriter's
# flags, headers.py.)
AFFINITY_HELD = 1 << 8


class AffinityKeyError(ValueError):
    """A key list the router refuses, with the JSON path of the offending value."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True, slots=True)
class SigningKey:
    id: str
    secret: bytes = b""

    def __repr__(self) -> str:
        return f"SigningKey({self.id!r})"  # never the secret (logs, tracebacks)


def parse_keys(raw: Any, path: str = "affinity_keys") -> tuple[SigningKey, ...]:
    """`[{"id": "k2", "secret": "<base64url>"}, ...]`, newest first -> keys (docs/routes-format.md)."""
    if not isinstance(raw, list):
        raise AffinityKeyError(path, "expected a list of {id, secret}")
    keys: list[SigningKey] = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise AffinityKeyError(where, "expected an object with id and secret")
        key_id, secret = item.get("id"), item.get("secret")
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise AffinityKeyError(f"{where}.id", "expected 1-64 of [A-Za-z0-9_-]")
        if any(key.id == key_id for key in keys):
            raise AffinityKeyError(f"{where}.id", f"key {key_id!r} listed twice")
        keys.append(SigningKey(key_id, _secret(secret, f"{where}.secret")))
    return tuple(keys)


def _secret(raw: Any, path: str) -> bytes:
    if not isinstance(raw, str):
        raise AffinityKeyError(path, "expected a base64url string")
    try:
        secret = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise AffinityKeyError(path, "not base64url") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise AffinityKeyError(path, f"too short: at least {MIN_SECRET_BYTES} bytes")
    return secret


def cookie_value(key: SigningKey, app: str, dyno: str, address: str) -> bytes:
    """The cookie value naming `dyno` (at `address`) of `app`, signed with `key`."""
    message = b"\x00".join((_CONTEXT, app.encode(), dyno.encode(), address.encode()))
    mac = hmac.new(key.secret, message, hashlib.sha256).digest()
    tag = base64.urlsafe_b64encode(mac).rstrip(b"=")
    return b"%s.%s.%s" % (key.id.encode(), tag, dyno.encode())


# A dyno's pool (router/pool.py's DynoPool): anything hashable with a `dyno` that has a
# `name` and an `address` (router/routes.py's DynoRoute).
P = TypeVar("P", bound=Hashable)


class Roster:
    """One app's routable dynos under the current keys: which pool a cookie value pins, and
    the Set-Cookie line naming each pool. Built whole when the entry or the keys change."""

    __slots__ = ("_pins", "_lines")

    def __init__(self, app: str, pools: Sequence[P], keys: Sequence[SigningKey]) -> None:
        # cookie value -> (pool, signed by the newest key); every key's value verifies.
        self._pins: dict[bytes, tuple[P, bool]] = {}
        self._lines: dict[P, bytes] = {}  # pool -> its Set-Cookie field (newest key)
        for pool in pools:
            dyno = pool.dyno
            if not _DYNO_NAME.fullmatch(dyno.name):
                continue  # not cookie-safe: balanced as usual, never pinned
            for rank, key in enumerate(keys):
                value = cookie_value(key, app, dyno.name, dyno.address)
                self._pins[value] = (pool, rank == 0)
                if rank == 0:
                    self._lines[pool] = b"Set-Cookie: %s=%s%s" % (COOKIE_NAME, value,
                                                                 _ATTRIBUTES)

    def pinned(self, values: Sequence[bytes]) -> tuple[P | None, bool]:
        """The pool the first valid cookie value pins, and whether the newest key signed it;
        (None, False) when none is valid. A dict lookup by the whole value: a forged value
        finds nothing, and nothing about the MAC is compared byte by byte."""
        pins = self._pins
        for value in values:
            found = pins.get(value)
            if found is not None:
                return found
        return None, False

    def set_cookie(self, pool: P, secure: bool) -> bytes:
        """The Set-Cookie field (without CRLF) pinning `pool`; b"" if it cannot be pinned."""
        line = self._lines.get(pool, b"")
        return line + _SECURE if line and secure else line


# -- what the request says (parsed from the head the router forwards, so only for apps with
# the feature: the head is the request's fields after the router's rewrite) -------------------

def cookie_values(head: bytes) -> list[bytes]:
    """The values of every `dynomesh-session-affinity` cookie in the head's Cookie fields
    (RFC 6265 §5.4: `name=value` pairs joined by "; "; a client may send several Cookie
    fields, and HTTP/2 clients usually do, RFC 9113 §8.2.3). Cookie names are case-sensitive,
    field names are not: the name is looked for as it is, then its field checked."""
    values: list[bytes] = []
    at = head.find(_NAME_IS)
    while at >= 0:
        line = head.rfind(b"\n", 0, at) + 1
        if head[at - 1] in _BEFORE_NAME and head[line:line + 7].lower() == b"cookie:":
            begin = at + len(_NAME_IS)
            end = head.find(b"\r", begin)
            semicolon = head.find(b";", begin, end)
            value = head[begin:semicolon if semicolon >= 0 else end]
            values.append(value.strip().strip(b'"'))  # RFC 6265 §4.1.1 allows DQUOTEs
        at = head.find(_NAME_IS, at + 1)
    return values


def forwarded_https(head: bytes) -> bool:
    """Whether the head's first X-Forwarded-Proto is https: the router's own, set from the
    listener, or a trusted load balancer's (headers.py)."""
    lower = head.lower()
    start = lower.find(b"\r\nx-forwarded-proto:")
    if start < 0:
        return False
    end = lower.find(b"\r\n", start + 2)
    return lower[start + 20:end].strip() == b"https"


def with_field(head: bytes, field: bytes) -> bytes:
    """A response head with one more field before its end (it ends with an empty line)."""
    return head[:-2] + field + b"\r\n\r\n"
