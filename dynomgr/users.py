"""Which Unix user a dyno runs as.

An agent running as root gives every app its own unprivileged system user, created on demand
(`dyno-<app>`), so dynos of different apps cannot read each other's files or signal each other's
processes. Dynos never run as root. An agent running as an ordinary user runs its dynos as that
user (a developer's laptop, a container without privileges).
"""

from __future__ import annotations

import asyncio
import os
import pwd
from dataclasses import dataclass

from dynomesh.sysusers import SystemUserError, ensure_user, user_name

# Marks users we created, so that an existing account that happens to be called `dyno-<app>`
# is never taken over.
GECOS_MARK = "dynomesh app"
_PREFIX = "dyno-"

UserError = SystemUserError  # no safe user could be found or created


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str

    @property
    def switches(self) -> bool:
        """Whether the child must change identity (the agent is someone else)."""
        return self.uid != os.geteuid() or self.gid != os.getegid()


def user_name_for(app: str) -> str:
    """`dyno-hello`; long app names are cut and made unique by a hash suffix."""
    return user_name(_PREFIX, app)


class DynoUsers:
    """Resolves (and, as root, creates) the user each app's dynos run as."""

    def __init__(self, *, per_app: bool | None = None) -> None:
        self.per_app = os.geteuid() == 0 if per_app is None else per_app
        self._cache: dict[str, RunAs] = {}
        self._creating: dict[str, asyncio.Future[RunAs]] = {}
        # Serialise useradd calls: they lock /etc/passwd, and concurrent calls fail with
        # "cannot lock /etc/passwd".
        self._useradd_lock = asyncio.Lock()

    def describe(self) -> str:
        if self.per_app:
            return "each app's dynos run as its own user (dyno-<app>)"
        me = pwd.getpwuid(os.geteuid()).pw_name
        return f"dynos run as {me}, the agent's user"

    async def for_app(self, app: str) -> RunAs:
        cached = self._cache.get(app)
        if cached is not None:
            return cached
        if not self.per_app:
            entry = pwd.getpwuid(os.geteuid())
            return self._cache.setdefault(app, RunAs(entry.pw_uid, os.getegid(), entry.pw_name))
        pending = self._creating.get(app)
        if pending is None:
            pending = asyncio.ensure_future(self._ensure_user(app))
            self._creating[app] = pending
            pending.add_done_callback(lambda _: self._creating.pop(app, None))
        run_as = await asyncio.shield(pending)
        self._cache[app] = run_as
        return run_as

    async def _ensure_user(self, app: str) -> RunAs:
        name = user_name_for(app)
        entry = await ensure_user(name, GECOS_MARK, app, f"{app}'s dynos", self._useradd_lock)
        return RunAs(entry.pw_uid, entry.pw_gid, name)
