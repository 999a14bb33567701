"""Reading request bodies: JSON objects with known fields, each checked with a clear message."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from controlplane import names
from controlplane.api.errors import bad_request, invalid


async def json_object(request: web.Request, *, allowed: Iterable[str],
                      required: Iterable[str] = (), empty_ok: bool = False) -> dict[str, Any]:
    """The body as a JSON object with only `allowed` fields and all `required` ones."""
    raw = await request.read()  # bounded by the app's client_max_size (413 beyond it)
    if not raw.strip():
        if empty_ok:
            return {}
        raise bad_request("this request needs a JSON body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
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


def named(check, value: Any) -> str:
    """Apply a `names` validator, turning its error into a 422."""
    try:
        return check(value)
    except names.InvalidName as exc:
        raise invalid(str(exc)) from exc

