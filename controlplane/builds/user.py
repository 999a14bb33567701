"""The build user: builds run the app's own code (a package's setup.py), so never as root.

As root, builds run as one system user made for them (`dynomesh-build`, no home, no shell),
created on first use; the dyno manager makes per-app users the same way. Otherwise builds run
as the control plane's own user (a developer's machine).
"""

from __future__ import annotations

import asyncio
import os
import pwd

from controlplane.builds.shell import BuildUser, current_user

GECOS = "dynomesh builds"


class BuildUserError(Exception):
    """No safe build user; the message says why and what to do."""


async def ensure_build_user(name: str) -> BuildUser:
    if os.geteuid() != 0:
        return current_user()
    entry = _lookup(name)
    if entry is None:
        child = await asyncio.create_subprocess_exec(
            "useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
            "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment", GECOS, name,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await child.communicate()
        entry = _lookup(name)  # another node on this machine may have made it meanwhile
        if entry is None:
            raise BuildUserError(f"cannot create the build user {name}: "
                                 f"{err.decode(errors='replace').strip() or child.returncode}")
    if GECOS not in entry.pw_gecos or entry.pw_uid == 0 or entry.pw_gid == 0:
        raise BuildUserError(f"user {name} exists but is not dynomesh's build user (its comment "
                             f"lacks {GECOS!r}, or it is root): builds never run as it")
    return BuildUser(entry.pw_uid, entry.pw_gid, name)


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None
