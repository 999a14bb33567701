"""Where the CLI finds its control plane, its token and its app.

Control plane and token: DYNOMESH_API and DYNOMESH_TOKEN, else
`$DYNOMESH_HOME/credentials.json` (written by `dynomesh control` on its first start).

App: `-a/--app`, else DYNOMESH_APP, else the nearest linked directory: `apps:create` and
`deploy` write the app's name to `.dynomesh/app` in the directory (like Heroku's git remote),
and any command run in it, or below it, uses that app.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from controlplane import credentials, names
from controlplane.cli.errors import CliError, Exit, usage

LINK_DIR = ".dynomesh"
LINK_FILE = "app"


@dataclass(frozen=True)
class Environment:
    api: str
    token: str | None
    home: Path
    cwd: Path
    default_app: str | None

    @classmethod
    def from_os(cls, env: Mapping[str, str] | None = None, cwd: Path | None = None
                ) -> "Environment":
        env = os.environ if env is None else env
        home = credentials.default_home(env)
        saved = credentials.load(home)
        api = env.get("DYNOMESH_API") or (saved.api if saved else credentials.DEFAULT_API)
        token = env.get("DYNOMESH_TOKEN") or (saved.token if saved else None)
        return cls(api=api.rstrip("/"), token=token, home=home, cwd=cwd or Path.cwd(),
                   default_app=env.get("DYNOMESH_APP") or None)

    def require_token(self) -> str:
        if not self.token:
            raise CliError(Exit.AUTH, (
                f"no token: run `dynomesh control` once on this machine (it writes "
                f"{self.home / credentials.FILENAME}), or set DYNOMESH_TOKEN (and DYNOMESH_API) "
                "to a user token from `dynomesh tokens:create --role user`"))
        return self.token


def linked_app(start: Path) -> str | None:
    """The app linked to `start` or the nearest directory above it."""
    for directory in (start, *start.parents):
        link = directory / LINK_DIR / LINK_FILE
        if link.is_file():
            name = link.read_text().strip()
            try:
                return names.app_name(name)
            except names.InvalidName as exc:
                raise usage(f"{link} names no valid app ({exc}); fix it or delete it") from exc
    return None


def link(directory: Path, app: str, *, home: Path) -> Path | None:
    """Link `directory` to `app`; None if it is not a directory we should write a link into.

    Never writes into $DYNOMESH_HOME itself: a home directory linked to one app would make
    every directory below it default to that app.
    """
    target = directory / LINK_DIR
    if target.resolve() == home.resolve():
        return None
    target.mkdir(exist_ok=True)
    path = target / LINK_FILE
    path.write_text(app + "\n")
    return path


def unlink(directory: Path, app: str) -> None:
    path = directory / LINK_DIR / LINK_FILE
    if path.is_file() and path.read_text().strip() == app:
        path.unlink()


def resolve_app(explicit: str | None, env: Environment, *, start: Path | None = None) -> str:
    if explicit:
        return explicit
    if env.default_app:
        return env.default_app
    found = linked_app(start or env.cwd)
    if found is None and start is not None:
        found = linked_app(env.cwd)
    if found is None:
        raise usage("which app? Pass --app NAME, or run this in a directory linked by "
                    "`dynomesh apps:create` or `dynomesh deploy --app NAME`")
    return found
