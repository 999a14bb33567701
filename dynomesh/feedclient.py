"""Following a control-plane feed: one long-lived NDJSON response, reconnected for ever.

Routers (the route feed) and dyno managers (the assignment feed) follow a feed the same way
(docs/feeds.md): `GET <control URL><path>?since=R` with a bearer token, one JSON object per
line; nothing at all for 15 s means the connection is dead; reconnect with exponential back-off
and jitter (0.1 s, doubling, at most 5 s), trying each control URL in turn, and resume with
`since`.

This module is that transport and nothing more, shared because it is the same on both sides.
What a line means, and which revision to resume from, belong to each follower (each side owns
its own parser of the wire shape), through the `FeedHandler` protocol. The back-off is the
shared `dynomesh.backoff` one, with "equal jitter" (`RECONNECT_BACKOFF`: each delay shortened at
random by up to a half, so that clients that lost one control plane together do not come back
in lockstep). `describe_error` and `api_error_message`
word a failed call to the control plane the same way for everything that talks to it (the
feeds, the log shipper, the dyno manager's reports).
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from dynomesh.backoff import BackoffPolicy
from dynomesh.lines import LineSplitter, LineTooLong


# docs/feeds.md: reconnects to the control plane (the feeds, and likewise log shipping and the
# dyno manager's reports) back off from 0.1 s, doubling, to at most 5 s, each delay shortened at
# random by up to a half ("equal jitter").
RECONNECT_BACKOFF = BackoffPolicy(0.1, 5.0, jitter=0.5)


@dataclass(frozen=True)
class FeedSettings:
    # docs/feeds.md: the control plane sends at least a heartbeat every 5 s; a client that
    # receives nothing for 15 s treats the connection as dead.
    dead_after: float = 15.0
    backoff: BackoffPolicy = RECONNECT_BACKOFF
    # Time to open the TCP connection to one control URL before trying the next.
    connect_timeout: float = 5.0
    # A line longer than this is a broken server, not a big snapshot (100 000 apps with a few
    # hosts and dynos each is about 30 MB).
    max_line_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("dead_after", "connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"feed {name.replace('_', ' ')} must be above 0 seconds")
        if self.max_line_bytes < 1024:
            raise ValueError("feed lines must be allowed at least 1024 bytes")


# -- what can end a connection ----------------------------------------------------------------

class FeedError(Exception):
    """Why a feed connection ended (or could not start); the message is for an operator."""

    applied = 0  # lines the follower applied on the connection that ended
    opened = False  # whether the feed had answered 200 on it


class FeedLost(FeedError):
    """The control plane is unreachable, failed, or ended the response."""


class FeedRefused(FeedError):
    """401 or 403: the token is not accepted (revoked, of the wrong role, another control
    plane's). Retrying cannot help until an operator acts, but the follower keeps trying."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class FeedResync(FeedError):
    """The follower refused a line; it reconnects and asks for a fresh snapshot."""


class FeedHandler(Protocol):
    """A follower: decides what to resume from and what each line means."""

    def since(self) -> int | None:
        """The revision to resume from, or None for a snapshot."""
        ...

    async def connecting(self, url: str) -> None:
        """About to open the feed at `url`; raise `FeedError` to fail this attempt."""
        ...

    def connected(self, url: str, reconnect: bool = False) -> None:
        """The feed answered 200; lines follow. `reconnect`: an earlier connection was open."""
        ...

    async def line(self, data: bytes) -> None:
        """One line of the feed. Raise `FeedResync` to refuse it (the connection is closed)."""
        ...

    def disconnected(self, url: str, error: FeedError) -> None:
        """The attempt failed or the connection ended; a reconnect follows after a back-off."""
        ...


async def follow_feed(urls: tuple[str, ...], path: str, token: str, handler: FeedHandler,
                      settings: FeedSettings, rng: random.Random | None = None) -> None:
    """Follow the feed at `path` until cancelled, moving on to the next URL after each failed
    attempt or lost connection."""
    import aiohttp  # imported here so that `--help` of the commands stays fast

    backoff = settings.backoff.start(rng)
    # sock_read bounds the wait for any byte, headers included: the dead-connection rule.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout,
                                    sock_read=settings.dead_after)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        attempt = 0
        opened = False  # some connection was open before: the next one is a reconnect
        while True:
            url = urls[attempt % len(urls)]
            attempt += 1
            try:
                await handler.connecting(url)
                await _stream(session, url, path, token, handler, settings, opened)
            except FeedError as error:
                opened = opened or error.opened
                handler.disconnected(url, error)
                if error.applied:
                    backoff.reset()  # the connection worked: come back quickly after a blip
            await asyncio.sleep(backoff.next_delay())


async def _stream(session, url: str, path: str, token: str, handler: FeedHandler,
                  settings: FeedSettings, reconnect: bool) -> None:
    """Read one feed response to its end; always raises the `FeedError` that ended it."""
    import aiohttp

    since = handler.since()
    params = {} if since is None else {"since": str(since)}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/x-ndjson"}
    applied = 0
    opened = False
    try:
        async with session.get(url + path, params=params, headers=headers) as response:
            if response.status in (401, 403):
                raise FeedRefused(response.status, await _error_message(response))
            if response.status != 200:
                raise FeedLost(f"HTTP {response.status}: {await _error_message(response)}")
            opened = True
            handler.connected(url, reconnect)
            splitter = LineSplitter(settings.max_line_bytes, overlong="refuse")
            async for chunk in response.content.iter_any():
                for line in splitter.feed(chunk):
                    if line.strip():
                        await handler.line(line)
                        applied += 1
            raise FeedLost("the control plane ended the feed")
    except FeedError as error:
        error.applied, error.opened = applied, opened
        raise
    except LineTooLong as error:
        raise _lost(str(error), applied, opened) from error
    except asyncio.TimeoutError as error:
        raise _lost(f"nothing received for {settings.dead_after:g} s", applied, opened) from error
    except aiohttp.ClientError as error:
        raise _lost(describe_error(error), applied, opened) from error
    except OSError as error:
        raise _lost(error.strerror or str(error), applied, opened) from error


def _lost(reason: str, applied: int, opened: bool) -> FeedLost:
    error = FeedLost(reason)
    error.applied, error.opened = applied, opened
    return error


def describe_error(error: BaseException) -> str:
    """A transport error in a few words, for log lines: "timed out", else its type and text."""
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def api_error_message(body: bytes | str, fallback: str = "no message") -> str:
    """The control plane's JSON error message (docs/api.md), or the start of the body."""
    try:
        message = json.loads(body).get("message")
        if isinstance(message, str):
            return message
    except (ValueError, AttributeError):
        pass  # not the API's JSON error shape: show the raw start instead
    if isinstance(body, bytes):
        body = body[:200].decode("utf-8", "replace")
    return body[:200].strip() or fallback


async def _error_message(response) -> str:
    try:
        body = await response.content.read(4096)
    except Exception as error:  # the body is only decoration for the message
        return f"(body unreadable: {describe_error(error)})"
    return api_error_message(body, response.reason or "no message")


# -- command-line helpers both followers use ----------------------------------------------------

def parse_control_urls(text: str, flag: str = "--control") -> tuple[str, ...]:
    """`http://10.0.0.1:5050,http://10.0.0.2:5050` -> the URLs without trailing slashes."""
    urls = []
    for part in text.split(","):
        part = part.strip().rstrip("/")
        if not part:
            continue
        parts = urlsplit(part)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{flag}: {part!r} is not an http:// or https:// URL of a control "
                             "plane, e.g. http://127.0.0.1:5050")
        if parts.query or parts.fragment:
            raise ValueError(f"{flag}: {part!r}: give the control plane's base URL, without "
                             "a query or fragment")
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise ValueError(f"{flag}: {part!r} has an invalid port") from None
        urls.append(part)
    if not urls:
        raise ValueError(f"{flag}: give at least one control plane URL, e.g. "
                         "http://127.0.0.1:5050")
    return tuple(dict.fromkeys(urls))


def read_token_file(path: Path, flag: str = "--token-file") -> str:
    """The token in `path` (surrounding whitespace ignored); ValueError naming the problem."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ValueError(f"{flag}: {path} does not exist; create a token with `dynomesh "
                         "tokens:create --role ROLE > FILE`") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{flag}: cannot read {path}: {error}") from None
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"{flag}: {path} must hold one token (dmt_...) and nothing else")
    return token
