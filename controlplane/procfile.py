"""The Procfile: `type: command` lines naming an app's process types.

Heroku's format: one process type per line, `name: command`; blank lines and lines starting
with `#` are ignored. A line that is neither is an error naming its line number, so a typo does
not silently drop a process type.
"""

from __future__ import annotations

from controlplane import names

PROCFILE = "Procfile"
MAX_BYTES = 64 * 1024


class ProcfileError(ValueError):
    """The Procfile cannot be used; the message names the line and the problem."""


def parse(text: str) -> dict[str, str]:
    """{process type: command}, in file order."""
    types: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not sep:
            raise ProcfileError(f"Procfile line {number}: expected 'type: command', got {raw!r}")
        try:
            names.process_type(name)
        except names.InvalidName as exc:
            raise ProcfileError(f"Procfile line {number}: {exc}") from exc
        if not command:
            raise ProcfileError(f"Procfile line {number}: process type {name!r} has no command")
        if name in types:
            raise ProcfileError(f"Procfile line {number}: process type {name!r} appears twice")
        types[name] = command
    if not types:
        raise ProcfileError("Procfile names no process types: add a line like 'web: python web.py'")
    return types


def parse_bytes(data: bytes) -> dict[str, str]:
    if len(data) > MAX_BYTES:
        raise ProcfileError(f"Procfile is larger than {MAX_BYTES} bytes")
    try:
        return parse(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProcfileError("Procfile is not UTF-8 text") from exc
