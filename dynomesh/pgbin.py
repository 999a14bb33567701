"""Where the installed PostgreSQL programs are (psql for `pg:psql`, initdb and postgres for
`dynomesh up`'s add-on server): the shared search, so both look in the same places in the same
order.

Debian's and Ubuntu's postgresql-NN packages put them in /usr/lib/postgresql/NN/bin, off PATH
(only psql gets a wrapper on PATH); several major versions may be installed side by side, and
the newest is the one to use.
"""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _major(bindir: Path) -> int:
    """The NN of /usr/lib/postgresql/NN/bin; 0 when it is not a number (sorted first)."""
    name = bindir.parent.name
    return int(name) if name.isdigit() else 0


def newest_with(tool: str, pattern: str = BIN_GLOB) -> Path | None:
    """`tool` in the newest package's bin dir (of those matching `pattern`) that has it."""
    for bindir in sorted(map(Path, glob.glob(pattern)), key=_major, reverse=True):
        if (bindir / tool).exists():
            return bindir / tool
    return None


def find(tool: str, *, pattern: str = BIN_GLOB, path: str | None = None,
         path_first: bool = False) -> Path | None:
    """`tool` from the packages' bin dirs or PATH (`path`, default $PATH), whichever comes first
    in the chosen order: PATH first for a client the user may have chosen (psql), the packages
    first for the server, whose matching initdb and postgres live side by side there."""
    def on_path() -> Path | None:
        found = shutil.which(tool, path=path)
        return Path(found) if found else None

    searches = (on_path, lambda: newest_with(tool, pattern))
    for search in (searches if path_first else reversed(searches)):
        found = search()
        if found is not None:
            return found
    return None
