"""The stack: the interpreters a VM offers to every dyno, and the fixed PATH dynos get.

Heroku's stacks (heroku-22, heroku-24) are an image every dyno shares; ours is what the VM's
operating system has installed. Both the dyno manager (which reports what its VM offers and
gives dynos `python`) and the control plane's builds (which build a virtualenv on one of those
interpreters) need the same answer, so the discovery lives here, once.

An interpreter is offered only when a dyno's unprivileged user can run it: the file and every
directory above it must be readable and enterable by "others" (a pyenv under /root, mode 0700,
is never offered: a dyno would get `Permission denied`).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

# Where interpreters are looked for, in order: the distribution's, then a local build's.
SEARCH_DIRS = ("/usr/bin", "/usr/local/bin")
# The system part of every dyno's PATH, after the app's and the stack's own bin directories
# (Heroku's dynos have /usr/local/bin:/usr/bin:/bin after the app's).
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
_NAME = re.compile(r"python3\.(\d{1,2})")
_VERSION = re.compile(r"3\.\d{1,2}\.\d{1,3}")
_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


@dataclass(frozen=True, order=True)
class Interpreter:
    """One Python a stack offers: `version` is major.minor.micro; `path` an absolute file."""

    version: str
    path: str

    @property
    def minor(self) -> str:
        """`3.11` of `3.11.2`: what `.python-version` usually names."""
        return ".".join(self.version.split(".")[:2])

    def key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def to_json(self) -> dict[str, str]:
        return {"version": self.version, "path": self.path}

    @classmethod
    def from_json(cls, item: object) -> "Interpreter":
        if not (isinstance(item, dict) and isinstance(item.get("version"), str)
                and isinstance(item.get("path"), str) and _VERSION.fullmatch(item["version"])
                and item["path"].startswith("/")):
            raise ValueError("an interpreter is {\"version\": \"3.11.2\", \"path\": \"/usr/bin/"
                             "python3.11\"}")
        return cls(item["version"], item["path"])


def others_can_use(path: Path, mode_of: Callable[[Path], int]) -> bool:
    """Whether a user who owns nothing can reach and read/run `path`: r-x for others on the
    file (or directory) itself and x on every directory above it."""
    try:
        if mode_of(path) & (stat.S_IROTH | stat.S_IXOTH) != (stat.S_IROTH | stat.S_IXOTH):
            return False
        return all(mode_of(parent) & stat.S_IXOTH for parent in path.parents)
    except OSError:
        return False


def _mode(path: Path) -> int:
    return path.stat().st_mode


def candidates(search_dirs: Iterable[str] = SEARCH_DIRS) -> list[Path]:
    """`python3.N` files in the search dirs, resolved, without repeats (python3 is a link)."""
    seen: dict[Path, None] = {}
    for directory in search_dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if _NAME.fullmatch(name):
                seen.setdefault(Path(directory, name).resolve(), None)
    return list(seen)


def probe_version(path: Path, timeout: float = 10.0) -> str | None:
    """The interpreter's own version (its name could lie), or None if it does not run."""
    try:
        done = subprocess.run([str(path), "-I", "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = done.stdout.strip()
    return version if done.returncode == 0 and _VERSION.fullmatch(version) else None


def discover(search_dirs: Iterable[str] = SEARCH_DIRS) -> list[Interpreter]:
    """The interpreters every user of this machine can run, newest first."""
    found = []
    for path in candidates(search_dirs):
        if not others_can_use(path, _mode):
            continue
        version = probe_version(path)
        if version is not None:
            found.append(Interpreter(version, str(path)))
    return sorted(found, key=Interpreter.key, reverse=True)


def system_path(mode_of: Callable[[Path], int] = _mode) -> list[str]:
    """The system directories of a dyno's PATH that others can enter (a missing one is left
    out rather than listed: PATH should hold nothing a dyno's user cannot use)."""
    return [d for d in SYSTEM_PATH if others_can_use(Path(d), mode_of)]


class NoSuchInterpreter(LookupError):
    """The app asked for a Python the stack does not offer; the message names those it does."""


def choose(offered: list[Interpreter], wanted: str | None) -> Interpreter:
    """The interpreter for `wanted` (`3.11`, `3.11.2`, `python-3.11.2`; None: the newest)."""
    if not offered:
        raise NoSuchInterpreter("the stack offers no Python: install python3 on the VMs "
                                "(Debian: apt-get install python3 python3-venv)")
    if wanted is None:
        return max(offered, key=Interpreter.key)
    text = wanted.strip().removeprefix("python-").removeprefix("python")
    matching = [i for i in offered if i.version == text or i.minor == text]
    if not matching:
        names = ", ".join(sorted({i.minor for i in offered}, reverse=True))
        raise NoSuchInterpreter(f"Python {text} is not on this stack; it offers {names}: "
                                f"name one of them in .python-version")
    return max(matching, key=Interpreter.key)
