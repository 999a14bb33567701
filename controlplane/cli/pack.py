"""Packing an app directory into a slug: a .tar.gz of its files, paths relative to its root.

Left out: `.git/` and `.dynomesh/` directories anywhere, a `.venv/` at the top (a local
virtualenv; the build makes the app's own), and whatever `.slugignore` lists.
`.slugignore` works like Heroku's (and like .gitignore without `!`): one pattern per line,
`#` comments; a pattern with no `/` matches a name at any depth, `/` at the start anchors it
to the app root, a `/` at the end matches only directories, and `*`, `?`, `[...]` are globs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from controlplane import procfile

ALWAYS_LEFT_OUT = frozenset({".git", ".dynomesh"})
# A local virtualenv at the top: its links point into this machine (the build makes the app's).
LEFT_OUT_AT_TOP = frozenset({".venv"})
SLUGIGNORE = ".slugignore"


class NotDeployable(ValueError):
    """The directory cannot become a slug; the message says what to add or fix."""


@dataclass(frozen=True)
class _Pattern:
    glob: str
    anchored: bool
    directories_only: bool

    def matches(self, relative: str, is_dir: bool) -> bool:
        if self.directories_only and not is_dir:
            return False
        if self.anchored:
            return fnmatch.fnmatchcase(relative, self.glob)
        return fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], self.glob)


class SlugIgnore:
    def __init__(self, lines: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            directories_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            self.patterns.append(_Pattern(line.lstrip("/"), anchored, directories_only))

    @classmethod
    def from_directory(cls, root: Path) -> "SlugIgnore":
        path = root / SLUGIGNORE
        return cls(path.read_text().splitlines() if path.is_file() else [])

    def ignores(self, relative: str, is_dir: bool) -> bool:
        return any(p.matches(relative, is_dir) for p in self.patterns)


@dataclass(frozen=True)
class PackedSlug:
    path: Path  # a temporary file; the caller deletes it
    sha256: str
    size: int
    files: int
    process_types: dict[str, str]


def check_procfile(root: Path) -> dict[str, str]:
    path = root / procfile.PROCFILE
    if not path.is_file():
        raise NotDeployable(
            f"{root} has no Procfile: add a file named Procfile that names each process type "
            "and its command, e.g.\n  web: python web.py\n  worker: python worker.py")
    try:
        return procfile.parse_bytes(path.read_bytes())
    except procfile.ProcfileError as exc:
        raise NotDeployable(f"{path}: {exc}") from exc


def members(root: Path, ignore: SlugIgnore) -> list[tuple[Path, str]]:
    """(absolute path, archive name) of everything that goes into the slug, sorted."""
    found: list[tuple[Path, str]] = []
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        relative_base = base.relative_to(root).as_posix()
        prefix = "" if relative_base == "." else relative_base + "/"
        kept = []
        for name in sorted(dirnames):
            relative = prefix + name
            if (name in ALWAYS_LEFT_OUT or (not prefix and name in LEFT_OUT_AT_TOP)
                    or ignore.ignores(relative, True)):
                continue
            kept.append(name)
            found.append((base / name, relative))
        dirnames[:] = kept  # os.walk descends only into what we keep
        for name in sorted(filenames):
            relative = prefix + name
            if not ignore.ignores(relative, False):
                found.append((base / name, relative))
    return sorted(found, key=lambda item: item[1])


def pack(root: Path) -> PackedSlug:
    root = root.resolve()
    if not root.is_dir():
        raise NotDeployable(f"{root} is not a directory: deploy a directory with a Procfile")
    process_types = check_procfile(root)
    entries = members(root, SlugIgnore.from_directory(root))
    handle = tempfile.NamedTemporaryFile(prefix="dynomesh-slug-", suffix=".tar.gz", delete=False)
    path = Path(handle.name)
    try:
        with handle, tarfile.open(fileobj=handle, mode="w:gz") as archive:
            for absolute, name in entries:
                archive.add(absolute, arcname=name, recursive=False)
        digest = hashlib.sha256()
        with open(path, "rb") as packed:
            for block in iter(lambda: packed.read(1 << 20), b""):
                digest.update(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    files = sum(1 for absolute, _ in entries if not absolute.is_dir())
    return PackedSlug(path, digest.hexdigest(), path.stat().st_size, files, process_types)
