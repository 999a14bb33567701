"""The build users: builds run the app's own code (a package's setup.py), so never as root,
and never as another app's: as root, each app's builds run as its own system user
(`build-<app>`, no home, no shell, made on first use like the dyno manager's `dyno-<app>`),
so that one app's build cannot touch another's cached virtualenv. Otherwise builds run as the
control plane's own user (a developer's machine).
"""

from __future__ import annotations

import asyncio
import os

from dynomesh.sysusers import SystemUserError, ensure_user, user_name

from controlplane.builds.shell import BuildUser, current_user

GECOS_MARK = "dynomesh builds"
PREFIX = "build-"

BuildUserError = SystemUserError


class BuildUsers:
    def __init__(self) -> None:
        self.per_app = os.geteuid() == 0
        self._lock = asyncio.Lock()  # useradd locks /etc/passwd: one at a time

    async def for_app(self, app: str) -> BuildUser:
        if not self.per_app:
            return current_user()
        name = user_name(PREFIX, app)
        entry = await ensure_user(name, GECOS_MARK, app, f"{app}'s builds", self._lock)
        return BuildUser(entry.pw_uid, entry.pw_gid, name)
