"""What every dyno on this VM gets from the stack: its fixed environment and `python`.

A dyno's environment never copies the agent's: the agent may run as root with a PATH through
/root (mode 0700), which an app's user cannot enter, so `gunicorn` or `python` would fail with
`Permission denied`. Instead (docs/dynomgr.md, "The dyno environment"):

    PATH = <app>/.venv/bin : <app>/bin : <data-dir>/stack/bin : /usr/local/bin:/usr/bin:/bin

The app's own directories come first, when the slug has them (the virtualenv a build made,
then the app's `bin/`, as Heroku puts /app/.heroku/python/bin and /app/bin first), then the
stack's `bin/`, which holds `python` and `python3` as links to the newest interpreter this VM
offers (Debian ships only `python3`), then the system directories that others may enter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dynomesh.stack import Interpreter, discover, system_path

VENV_BIN = ".venv/bin"  # where the Python buildpack puts the app's virtualenv
APP_BIN = "bin"
LANG = "C.UTF-8"
ALIASES = ("python", "python3")


@dataclass(frozen=True)
class DynoStack:
    interpreters: tuple[Interpreter, ...]
    bin_dir: Path | None  # None when the VM offers no Python
    system_dirs: tuple[str, ...]

    def path_for(self, app_dir: Path) -> str:
        """Only directories that exist: PATH lists nothing a dyno's user cannot use."""
        parts = [str(app_dir / d) for d in (VENV_BIN, APP_BIN) if (app_dir / d).is_dir()]
        if self.bin_dir is not None:
            parts.append(str(self.bin_dir))
        parts.extend(self.system_dirs)
        return ":".join(parts)

    def env_for(self, app_dir: Path) -> dict[str, str]:
        return {"PATH": self.path_for(app_dir), "LANG": LANG}

    def report(self) -> dict:
        """What the registration tells the control plane (`dynomesh stack` shows it)."""
        return {"interpreters": [i.to_json() for i in self.interpreters]}


def link_aliases(bin_dir: Path, target: Interpreter | None) -> None:
    """`python` and `python3` in `bin_dir` point at `target` (replaced atomically, so a dyno
    starting meanwhile finds either the old link or the new)."""
    bin_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(bin_dir, 0o755)
    os.chmod(bin_dir.parent, 0o755)
    for name in ALIASES:
        link = bin_dir / name
        if target is None:
            link.unlink(missing_ok=True)
            continue
        temporary = bin_dir / f".{name}.new"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target.path)
        os.replace(temporary, link)


def prepare_stack(data_root: Path) -> DynoStack:
    """Discover this VM's interpreters and prepare `<data-dir>/stack/bin` for dynos."""
    interpreters = tuple(discover())
    newest = interpreters[0] if interpreters else None
    bin_dir = data_root / "stack" / "bin"
    link_aliases(bin_dir, newest)
    return DynoStack(interpreters, bin_dir if newest else None, tuple(system_path()))
