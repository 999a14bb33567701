"""Reading request bodies: JSON objects with known fields, each checked with a clear message."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from controlplane import names
from controlplane.api.context import context
from controlplane.api.errors import ApiError, bad_request, invalid

# Dyno managers' reports list every dyno of a VM (hundreds): they may be larger than the
# 64 KiB other JSON bodies are held to. The app's client_max_size is this larger bound.
MAX_REPORT_BYTES = 4 * 1024 * 1024


async def read_limited(request: web.Request, limit: int | None = None) -> bytes:
    """The whole body, refused with 413 beyond `limit` (default: the JSON body limit)."""
    limit = context(request).config.max_body_bytes if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "request_too_large", f"the body is over the {limit}-byte limit")
    raw = await request.read()  # bounded by the app's client_max_size (413 beyond it)
    if len(raw) > limit:
        raise ApiError(413, "request_too_large", f"the body is over the {limit}-byte limit")
    return raw


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON ({exc})") from exc


async def json_object(request: web.Request, *, allowed: Iterable[str] | None,
                      required: Iterable[str] = (), empty_ok: bool = False,
                      limit: int | None = None) -> dict[str, Any]:
    """The body as a JSON object with all `required` fields and, unless `allowed` is None
    (agents' reports, where newer agents may add fields), only `allowed` ones."""
    raw = await read_limited(request, limit)
    if not raw.strip():
        if empty_ok:
            return {}
        raise bad_request("this request needs a JSON body")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    if allowed is not None:
        allowed = set(allowed)
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise invalid(f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(allowed))}")
    missing = [name for name in required if name not in body]
    if missing:
        raise invalid(f"missing field {missing[0]!r}")
    return body


def string(body: dict[str, Any], field: str, *, max_length: int = 1024) -> str:
    value = body[field]
    if not isinstance(value, str):
        raise invalid(f"{field!r} must be a string")
    if len(value) > max_length:
        raise invalid(f"{field!r} is longer than {max_length} characters")
    return value


def boolean(body: dict[str, Any], field: str) -> bool:
    value = body[field]
    if not isinstance(value, bool):
        raise invalid(f"{field!r} must be true or false")
    return value


def integer(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{field!r} must be a whole number")
    if not low <= value <= high:
        raise invalid(f"{field!r} must be between {low} and {high}")
    return value


def limit(request: web.Request, default: int = 100) -> int:
    """The `?limit=` of a list, 1–1000."""
    text = request.query.get("limit", str(default))
    if not text.isdigit():
        raise invalid("'limit' must be a whole number")
    return integer(int(text), "limit", low=1, high=1000)


def named(check, value: Any) -> str:
    """Apply a `names` validator, turning its error into a 422."""
    try:
        return check(value)
    except names.InvalidName as exc:
        raise invalid(str(exc)) from exc

