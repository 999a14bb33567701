"""Per-app router settings: the rules the API and the CLI share (docs/cli.md, `config:router`).

An app may set its own request timeout (Heroku fixes it at 30 s, its users' most common
complaint), a maximum request body size, and a health-check path that dyno managers poll on
each running web dyno (with an interval and a number of failures in a row that takes a dyno out
of the routers' tables). Each is optional: unset, the router's or the dyno manager's own flag
decides (`--request-timeout`, `--max-body-size`; `--health-check-every`, `--health-check-failures`).

Pure: `RouterSettings` is the value, `validated` checks one JSON field as the API receives it,
`from_flag` reads one CLI flag's text into that JSON value. Every error is a sentence for the
user, naming the setting and the range or form that is accepted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from dynomesh.bytesize import ByteSizeError, format_byte_size, parse_byte_size

# Heroku's 30 s is the default; an hour is the longest a request may wait for its first byte.
TIMEOUT_RANGE = (1, 3600)
# 1 byte to 5 GB: beyond that an upload belongs in object storage, not in a request.
BODY_RANGE = (1, 5 * 1024 ** 3)
INTERVAL_RANGE = (1, 3600)  # seconds between health checks
FAILURES_RANGE = (1, 100)  # failed checks in a row before a dyno leaves the routers' tables
MAX_PATH = 1024
# An origin-form path with an optional query (RFC 9112 §3.2.1), no spaces or control bytes.
_PATH = re.compile(r"/[\x21-\x7e]*")
DEFAULT = "default"  # the CLI's word for "unset: the router's or dyno manager's flag decides"


class InvalidSetting(ValueError):
    """A setting's value broke its rule; the message is meant for the user."""


@dataclass(frozen=True)
class RouterSettings:
    request_timeout: float | None = None  # seconds to the first response byte (H12)
    max_body_bytes: int | None = None  # a larger request body gets 413 (H25)
    health_check_path: str | None = None  # GET on each running web dyno
    health_check_interval: float | None = None  # seconds between checks
    health_check_failures: int | None = None  # failures in a row: out of the routers' tables

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def changed(self, changes: dict[str, Any]) -> "RouterSettings":
        """These settings with `changes` (already validated; None resets one)."""
        return replace(self, **changes)

    def health_fields_differ(self, other: "RouterSettings") -> bool:
        """A change the dyno managers hear of (the assignment feed carries the health check)."""
        return any(getattr(self, name) != getattr(other, name) for name in HEALTH_FIELDS)


NAMES = tuple(f.name for f in fields(RouterSettings))
HEALTH_FIELDS = ("health_check_path", "health_check_interval", "health_check_failures")


def _number(value: Any, name: str, low: float, high: float, unit: str, *,
            whole: bool = False) -> float:
    kinds = int if whole else (int, float)
    if (isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value)
            or not low <= value <= high):
        kind = "a whole number" if whole else "a number"
        raise InvalidSetting(f"{name} must be {kind} from {low:g} to {high:g} {unit}; "
                             f"got {value!r}")
    return value


def validated(name: str, value: Any) -> Any:
    """One setting's JSON value, checked; None (reset to the default) is always accepted."""
    if value is None:
        return None
    if name == "request_timeout":
        return _number(value, name, *TIMEOUT_RANGE, "seconds")
    if name == "max_body_bytes":
        return int(_number(value, name, *BODY_RANGE, "bytes", whole=True))
    if name == "health_check_path":
        if not isinstance(value, str) or len(value) > MAX_PATH or not _PATH.fullmatch(value):
            raise InvalidSetting(f"health_check_path must be a path starting with / and without "
                                 f"spaces (e.g. /health); got {value!r}")
        return value
    if name == "health_check_interval":
        return _number(value, name, *INTERVAL_RANGE, "seconds")
    if name == "health_check_failures":
        return int(_number(value, name, *FAILURES_RANGE, "failures", whole=True))
    raise InvalidSetting(f"no router setting named {name!r}; settings: {', '.join(NAMES)}")


def from_flag(name: str, text: str) -> Any:
    """A CLI flag's text -> the setting's JSON value (`default` -> None), checked."""
    if text.strip().lower() == DEFAULT:
        return None
    if name == "max_body_bytes":
        try:
            return validated(name, parse_byte_size(text))
        except ByteSizeError as exc:
            raise InvalidSetting(f"--max-body-size: {exc}") from None
    if name == "health_check_path":
        return validated(name, text)
    try:
        number = float(text)
    except ValueError:
        raise InvalidSetting(f"{name} must be a number, or `default`; got {text!r}") from None
    return validated(name, int(number) if number.is_integer() else number)


def describe(name: str, value: Any) -> str:
    """How `config:router` and `apps:info` show a value."""
    if value is None:
        return "none" if name == "health_check_path" else "default"
    if name == "max_body_bytes":
        return format_byte_size(value)
    if name in ("request_timeout", "health_check_interval"):
        return f"{value:g} s"
    return str(value)


LABELS = {"request_timeout": "Request timeout", "max_body_bytes": "Max body size",
          "health_check_path": "Health check", "health_check_interval": "Check interval",
          "health_check_failures": "Check failures"}


def settings_lines(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, shown value) per setting of an API answer, for `config:router` and `apps:info`."""
    return [(LABELS[name], describe(name, settings[name])) for name in NAMES]
