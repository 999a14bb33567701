"""Unprivileged system users made for an app: `dyno-<app>` for its dynos (dynomgr/users.py),
`build-<app>` for its builds (controlplane/builds/user.py), so that no app's code ever runs as
root or as another app's user.

Users are created with `useradd --system` (no home, no shell) and marked in their comment, so
that an existing account that happens to have the name is never taken over.
"""

from __future__ import annotations

import asyncio
import hashlib
import pwd
import stat
from pathlib import Path

MAX_NAME = 32  # useradd's limit on Linux


class SystemUserError(Exception):
    """No safe user could be found or created; the message says which and why."""


def user_name(prefix: str, app: str) -> str:
    """`<prefix><app>`; a long app name is cut and made unique by a hash suffix."""
    name = prefix + app
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(app.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}-{digest}"


def lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def check_ours(entry: pwd.struct_passwd, mark: str, purpose: str) -> None:
    """Refuse a user we did not make, or one that is root."""
    if mark not in entry.pw_gecos:
        raise SystemUserError(f"user {entry.pw_name} exists but was not created by dynomesh "
                              f"(its comment lacks {mark!r}); refusing to run {purpose} as it")
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SystemUserError(f"user {entry.pw_name} has uid or gid 0; {purpose} never run "
                              "as root")


async def useradd(name: str, comment: str) -> pwd.struct_passwd:
    """Create a system user and return it (also when another process made it meanwhile:
    useradd then exits 9 and the user exists)."""
    argv = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
            "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment", comment, name]
    try:
        child = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise SystemUserError(f"cannot create user {name}: {exc}") from exc
    _, err = await child.communicate()
    created = lookup(name)
    if created is None:
        reason = err.decode(errors="replace").strip() or f"useradd exited {child.returncode}"
        raise SystemUserError(f"cannot create user {name}: {reason}")
    return created


async def ensure_user(name: str, mark: str, app: str, purpose: str,
                      lock: asyncio.Lock) -> pwd.struct_passwd:
    """The user `name`, made (marked `<mark> <app>`) if missing; SystemUserError if it exists
    but is not ours. `lock` serialises useradd, which locks /etc/passwd ("cannot lock")."""
    entry = lookup(name)
    if entry is None:
        async with lock:
            entry = lookup(name) or await useradd(name, f"{mark} {app}")
    check_ours(entry, mark, purpose)
    return entry


def enterable_by_others(directory: Path) -> bool:
    """Whether a user who owns nothing can pass through `directory` and all above it."""
    for path in [directory, *directory.parents]:
        try:
            if not path.stat().st_mode & stat.S_IXOTH:
                return False
        except FileNotFoundError:
            continue  # created later with a mode of our choosing
    return True
