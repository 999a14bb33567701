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
_CONTEXT = b"dynomesh-session-affinity\x00"  # the MAC covers this purpose, not only the data
_NAME_IS = COOKIE_NAME + b"="

# Key ids and dyno names travel inside the cookie: RFC 6265 cookie-octets without "." (the
# separator) for ids; a dyno name that is not cookie-safe is never pinned.
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DYNO_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
MIN_SECRET_BYTES = 16  # 128 bits; the control plane makes 32
# Affinity cookies looked at in one request: a browser sends one (two at most, for two paths
# or domains); a client sending thousands would otherwise cost a copy of its head each.
MOST_COOKIES = 4

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
    # Each part with its length: no two (app, dyno, address) give one message.
    message = _CONTEXT + b"".join(b"%d:%s" % (len(part), part) for part in (
        app.encode(), dyno.encode(), address.encode()))
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

    def pinned(self, head: bytes) -> tuple[P | None, bool]:
        """The pool the first valid affinity cookie in the request head pins, and whether the
        newest key signed it; (None, False) when none is valid.

        A cookie is `name=value` in a Cookie field, pairs joined by "; " (RFC 6265 §5.4; a
        client may send several Cookie fields, HTTP/2 clients usually do, RFC 9113 §8.2.3).
        The name is looked for wherever it stands (the first `MOST_COOKIES` times), without
        checking that its field is a Cookie: every header is the client's to choose anyway,
        and only a value this roster made pins. Each value is checked by a dict lookup of the whole value: a forged one
        finds nothing, and nothing about the MAC is compared byte by byte. (`partition`s, not
        `find`s with positions: on the request path each call's argument parsing counts.)"""
        pins = self._pins
        rest = head
        for _ in range(MOST_COOKIES):  # each look copies the rest of the head: bounded
            _, found, rest = rest.partition(_NAME_IS)
            if not found:
                break
            # The value ends at the line's end or the next pair; RFC 6265 §4.1.1 allows quotes.
            value = rest.partition(b"\r")[0].partition(b";")[0].strip(b' \t"')
            hit = pins.get(value)
            if hit is not None:
                return hit
        return None, False

    def set_cookie(self, pool: P, secure: bool) -> bytes:
        """The Set-Cookie field (without CRLF) pinning `pool`; b"" if it cannot be pinned."""
        line = self._lines.get(pool, b"")
        return line + _SECURE if line and secure else line


# -- what the request says (read from the head the router forwards, so only for apps with the
# feature: the head is the request's fields after the router's rewrite) ----------------------

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
