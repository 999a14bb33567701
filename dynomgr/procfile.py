"""The Procfile: `<process type>: <command>` per line, at the root of every slug.

Blank lines and `#` comments are skipped. Process type names are letters, digits, `_` and `-`
(what Heroku and foreman accept). A line that is neither is an error naming its line number,
rather than being skipped silently as foreman does: a typo in `web:` would otherwise surface much
later as "no web process".
"""

from __future__ import annotations

import re
from pathlib import Path

from dynomgr.assignments import Assignment
from dynomgr.errors import ProcessTypeError

_LINE = re.compile(r"^([A-Za-z0-9_-]+)[ \t]*:[ \t]*(.*?)[ \t]*$")


class ProcfileError(ValueError):
    """The Procfile cannot be used; the message names the line."""


def parse_procfile(text: str) -> dict[str, str]:
    """Process type -> command, in file order."""
    types: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(stripped)
        if match is None:
            raise ProcfileError(
                f"Procfile line {number}: expected `<process type>: <command>`, got {stripped!r}"
            )
        name, command = match.groups()
        if not command:
            raise ProcfileError(f"Procfile line {number}: process type {name!r} has no command")
        if name in types:
            raise ProcfileError(f"Procfile line {number}: process type {name!r} is defined twice")
        types[name] = command
    return types


def command_of(assignment: Assignment, directory: Path) -> str:
    """The command of the assignment's process type, from the Procfile of its unpacked slug;
    raises `ProcessTypeError` naming the release and what is wrong."""
    a = assignment
    if a.one_off is not None:
        return a.one_off.command  # a one-off dyno runs its own command (the release phase's
        # is the Procfile's `release:`, which the control plane put there)
    release = f"{a.app} v{a.release}"
    try:
        text = (directory / "Procfile").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProcessTypeError(f"the slug of {release} has no Procfile at its root") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProcessTypeError(f"the Procfile of {release} cannot be read: {exc}") from exc
    try:
        types = parse_procfile(text)
    except ProcfileError as exc:
        raise ProcessTypeError(f"{exc} (slug of {release})") from exc
    if a.type not in types:
        known = ", ".join(types) or "none"
        raise ProcessTypeError(f"unknown process type {a.type!r}: the Procfile of {release} defines {known}")
    return types[a.type]
