"""Assignments: the dynos this VM must run, as read from a file or the control plane's feed.

The wire shape is documented in docs/assignments-format.md. This module owns the dyno manager's
parser of it: it turns JSON into frozen `Assignment` values and reports every bad entry as one
line naming the entry, without giving up on the good ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

# Heroku's app names: lowercase letters, digits and dashes, starting with a letter. We allow
# longer names than Heroku's 30 characters; user names derived from them are shortened.
_APP = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_TYPE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Dyno ids are chosen by the control plane; anything printable and short will do.
_DYNO_ID = re.compile(r"^[!-~]{1,128}$")

KINDS = ("formation", "one-off")
MAX_ONE_OFF_TIMEOUT = 7 * 86400


# How a dyno is known on its VM: the control plane's dyno id when the entry has one (two
# entries of one app may share a name while a preboot runs old and new dynos side by side),
# else (app, dyno name), which is unique in an assignments file.
Key = str | tuple[str, str]


class AssignmentsError(ValueError):
    """The whole set cannot be read (not JSON, not an object with a `dynos` list)."""


@dataclass(frozen=True)
class SlugRef:
    # The slug is its SHA-256; the URL is only where to fetch it. Two control nodes hand out two
    # URLs for one slug, and following the other node must not restart every dyno.
    url: str = field(compare=False)
    sha256: str

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0].lower() if "://" in self.url else ""


@dataclass(frozen=True)
class OneOffSpec:
    """What a one-off dyno (`dynomesh run`, a release phase) runs, and how: once, its own
    command, for at most `timeout` seconds; attached to a session at `attach`, or not."""

    command: str
    attach: str | None = None  # the control plane's URL for its session; None: output to logs
    tty: tuple[int, int] | None = None  # (columns, rows): run it on a pseudo-terminal
    timeout: int = 86400


@dataclass(frozen=True)
class Assignment:
    """One dyno this VM must run. Any difference between two assignments means a restart."""

    app: str
    name: str  # "web.1"
    type: str  # "web": the Procfile entry to run
    release: int
    slug: SlugRef
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    memory_mb: int = 512  # Heroku's standard-1X size
    health_check: str | None = None
    # The running health check's pace (the app's `config:router`); None: the agent's flags.
    health_check_interval: float | None = None
    health_check_failures: int | None = None
    kind: str = "formation"
    id: str | None = None  # the control plane's dyno id (feed entries have one)
    # Bumped by `ps:restart`: like any other change, a new value restarts the dyno.
    restart: int = 0
    one_off: OneOffSpec | None = None  # set for kind "one-off"

    @property
    def key(self) -> Key:
        """Unique on one VM: the dyno id, else (app, name) (two apps may both have a web.1)."""
        return self.id if self.id is not None else (self.app, self.name)

    @property
    def is_web(self) -> bool:
        # Only `web` dynos get a $PORT and are routed to (Heroku's rule).
        return self.type == "web"

    def describe(self) -> str:
        return f"{self.app} {self.name} v{self.release}"


@dataclass(frozen=True)
class EntryError:
    index: int
    key: Key | None  # the entry's id, else (app, name), when the entry said that much
    message: str
    names: tuple[str, str] | None = None  # (app, name), to name the entry in messages

    def __str__(self) -> str:
        where = f"dynos[{self.index}]"
        names = self.names or (self.key if isinstance(self.key, tuple) else None)
        if names is not None:
            where += f" ({names[0]} {names[1]})"
        elif self.key is not None:
            where += f" (dyno {self.key})"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class AssignmentSet:
    """A full desired set. Entries with errors are in `errors`, not in `dynos`."""

    dynos: Mapping[Key, Assignment]
    errors: tuple[EntryError, ...] = ()

    @property
    def rejected_keys(self) -> frozenset[Key]:
        """Dynos named by bad entries: whatever runs under these names is kept as it is."""
        return frozenset(error.key for error in self.errors if error.key is not None)


class _Invalid(ValueError):
    pass


def parse_assignments(text: str, supported_schemes: frozenset[str]) -> AssignmentSet:
    """Parse a whole assignments document; raises `AssignmentsError` only for whole-file faults."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssignmentsError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("dynos"), list):
        raise AssignmentsError('expected a JSON object with a "dynos" list')
    dynos, errors = parse_entries(document["dynos"], supported_schemes)
    return AssignmentSet(MappingProxyType(dynos), tuple(errors))


def parse_entries(entries: list, supported_schemes: frozenset[str]) -> tuple[dict[Key, Assignment], list[EntryError]]:
    """Entries of a document, a feed snapshot or a delta -> (good ones by key, errors)."""
    dynos: dict[Key, Assignment] = {}
    errors: list[EntryError] = []
    for index, entry in enumerate(entries):
        try:
            assignment = parse_entry(entry, supported_schemes)
        except _Invalid as exc:
            errors.append(EntryError(index, _key_of(entry), str(exc), _names_of(entry)))
            continue
        if assignment.key in dynos:
            what = f"dyno {assignment.id}" if assignment.id is not None else f"{assignment.name} of {assignment.app}"
            errors.append(EntryError(index, None, f"{what} is listed twice; the first one counts", (assignment.app, assignment.name)))
            continue
        dynos[assignment.key] = assignment
    return dynos, errors


def _names_of(entry: Any) -> tuple[str, str] | None:
    if isinstance(entry, dict):
        app, name = entry.get("app"), entry.get("name")
        if isinstance(app, str) and isinstance(name, str):
            return (app, name)
    return None


def _key_of(entry: Any) -> Key | None:
    if isinstance(entry, dict) and "id" in entry:
        dyno_id = entry["id"]
        return dyno_id if isinstance(dyno_id, str) and _DYNO_ID.match(dyno_id) else None
    return _names_of(entry)


def parse_entry(entry: Any, supported_schemes: frozenset[str]) -> Assignment:
    if not isinstance(entry, dict):
        raise _Invalid(f"expected an object, got {type(entry).__name__}")
    kind = entry.get("kind", "formation")
    if kind not in KINDS:
        raise _Invalid(f"unknown kind {kind!r} (this dyno manager runs: {', '.join(KINDS)})")
    app = _string(entry, "app")
    if not _APP.match(app):
        raise _Invalid(f"app {app!r} is not a valid app name (lowercase letters, digits, dashes)")
    ptype = _string(entry, "type")
    if not _TYPE.match(ptype):
        raise _Invalid(f"type {ptype!r} is not a valid process type (letters, digits, _ and -)")
    name = _string(entry, "name")
    prefix, dot, number = name.rpartition(".")
    if prefix != ptype or not dot or not number.isdigit() or number.startswith("0"):
        raise _Invalid(f"name {name!r} must be <type>.<number>, like {ptype}.1")
    release = entry.get("release")
    if not isinstance(release, int) or isinstance(release, bool) or release < 1:
        raise _Invalid(f"release must be a positive integer, got {release!r}")
    return Assignment(
        app=app,
        name=name,
        type=ptype,
        release=release,
        slug=_slug(entry.get("slug"), supported_schemes),
        env=_env(entry.get("env", {})),
        memory_mb=_memory(entry.get("memory_mb", 512)),
        health_check=_health_check(entry.get("health_check")),
        health_check_interval=_optional_number(entry, "health_check_interval", float, 1, 3600),
        health_check_failures=_optional_number(entry, "health_check_failures", int, 1, 100),
        kind=kind,
        id=_dyno_id(entry),
        restart=_restart(entry.get("restart", 0)),
        one_off=_one_off(entry) if kind == "one-off" else None,
    )


def _one_off(entry: dict) -> OneOffSpec:
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip() or "\0" in command:
        raise _Invalid("a one-off entry needs its command: a non-empty string")
    attach = entry.get("attach")
    if attach is not None and (not isinstance(attach, str)
                               or not attach.startswith(("http://", "https://"))):
        raise _Invalid(f"attach must be null or an http(s) URL, got {attach!r}")
    tty = entry.get("tty")
    if tty is not None and (not isinstance(tty, list) or len(tty) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536 for v in tty)):
        raise _Invalid(f"tty must be null or [columns, rows], got {tty!r}")
    timeout = entry.get("timeout", 86400)
    if (not isinstance(timeout, int) or isinstance(timeout, bool)
            or not 0 < timeout <= MAX_ONE_OFF_TIMEOUT):
        raise _Invalid(f"timeout must be seconds between 1 and {MAX_ONE_OFF_TIMEOUT}, "
                       f"got {timeout!r}")
    return OneOffSpec(command, attach, tuple(tty) if tty else None, timeout)


def _dyno_id(entry: dict) -> str | None:
    if "id" not in entry:
        return None
    value = entry["id"]
    if not isinstance(value, str) or not _DYNO_ID.match(value):
        raise _Invalid(f"id must be 1 to 128 printable characters without spaces, got {value!r}")
    return value


def _restart(raw: Any) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise _Invalid(f"restart must be a whole number >= 0, got {raw!r}")
    return raw


def _string(entry: dict, key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{key} must be a non-empty string, got {value!r}")
    return value


def _slug(raw: Any, supported_schemes: frozenset[str]) -> SlugRef:
    if not isinstance(raw, dict):
        raise _Invalid('slug must be an object {"url": ..., "sha256": ...}')
    url, sha = raw.get("url"), raw.get("sha256")
    if not isinstance(url, str) or "://" not in url:
        raise _Invalid(f"slug url must be a URL like file:///path/slug.tgz, got {url!r}")
    ref = SlugRef(url, sha.lower() if isinstance(sha, str) else "")
    if ref.scheme not in supported_schemes:
        supported = ", ".join(f"{s}://" for s in sorted(supported_schemes))
        raise _Invalid(f"slug url scheme {ref.scheme}:// is not supported (use {supported})")
    if not _SHA256.match(ref.sha256):
        raise _Invalid(f"slug sha256 must be 64 hex digits, got {sha!r}")
    return ref


def _env(raw: Any) -> Mapping[str, str]:
    if not isinstance(raw, dict):
        raise _Invalid("env must be an object of string values")
    for key, val in raw.items():
        if not _ENV_KEY.match(key):
            raise _Invalid(f"env name {key!r} is not a valid environment variable name")
        if not isinstance(val, str):
            raise _Invalid(f"env {key} must be a string, got {type(val).__name__}")
        if "\0" in val:
            raise _Invalid(f"env {key} contains a NUL byte")
    return MappingProxyType(dict(raw))


def _memory(raw: Any) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise _Invalid(f"memory_mb must be a positive integer, got {raw!r}")
    return raw


def _health_check(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.startswith("/") or any(c in raw for c in " \r\n"):
        raise _Invalid(f"health_check must be null or a path like /health, got {raw!r}")
    return raw


def _optional_number(entry: dict, key: str, kind: type, low: float, high: float):
    raw = entry.get(key)
    if raw is None:
        return None
    if (isinstance(raw, bool) or not isinstance(raw, (int, float) if kind is float else int)
            or not low <= raw <= high):
        raise _Invalid(f"{key} must be null or a number from {low:g} to {high:g}, got {raw!r}")
    return kind(raw)


def dump_assignment(assignment: Assignment) -> dict[str, Any]:
    """The wire shape of one assignment (the inverse of `parse_entry`)."""
    return {
        "kind": assignment.kind,
        "name": assignment.name,
        "app": assignment.app,
        "type": assignment.type,
        "release": assignment.release,
        "slug": {"url": assignment.slug.url, "sha256": assignment.slug.sha256},
        "env": dict(assignment.env),
        "memory_mb": assignment.memory_mb,
        "health_check": assignment.health_check,
        **({"health_check_interval": assignment.health_check_interval}
           if assignment.health_check_interval is not None else {}),
        **({"health_check_failures": assignment.health_check_failures}
           if assignment.health_check_failures is not None else {}),
        **({"id": assignment.id} if assignment.id is not None else {}),
        **({"restart": assignment.restart} if assignment.restart else {}),
        **(_dump_one_off(assignment.one_off) if assignment.one_off else {}),
    }


def _dump_one_off(spec: OneOffSpec) -> dict[str, Any]:
    return {"command": spec.command, "attach": spec.attach,
            "tty": list(spec.tty) if spec.tty else None, "timeout": spec.timeout}
