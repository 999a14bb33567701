"""Where the CLI finds the control plane and its token: `$DYNOMESH_HOME/credentials.json`.

`dynomesh control` writes this file on its first start (a fresh `user` token), so the CLI on the
same machine needs no configuration. `DYNOMESH_API` and `DYNOMESH_TOKEN` override it. The file
holds a secret: it is created with mode 0600 and replaced atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

FILENAME = "credentials.json"
DEFAULT_API = "http://127.0.0.1:5050"


@dataclass(frozen=True)
class Credentials:
    api: str
    token: str


def default_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("DYNOMESH_HOME") or Path.home() / ".dynomesh").expanduser()


def load(home: Path) -> Credentials | None:
    """The saved credentials, or None if there are none (or they are unreadable as such)."""
    try:
        data = json.loads((home / FILENAME).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a damaged file is treated like a missing one; `control` rewrites it
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("api", "token")):
        return None
    return Credentials(api=data["api"], token=data["token"])


def save(home: Path, credentials: Credentials) -> Path:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / FILENAME
    temporary = home / f".{FILENAME}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"api": credentials.api, "token": credentials.token}, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
