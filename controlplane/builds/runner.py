"""One build, from an uploaded source archive to a slug and a release.

1. The source is checked (the slug rules: no member outside the app, a Procfile that parses)
   and unpacked into a fresh directory `work/<build id>/app`, owned by the build user.
2. Every buildpack that detects the app compiles it, in order, within the time limit; with
   none, the source itself is the slug (a directory that already runs deploys as it is).
3. The build user packs the directory (gzip, `slugpack.py`); the slug must fit the size
   limit, is checked and stored like an uploaded one, then one transaction records it, the
   release and the build.
4. The work directory goes, whatever happened; the per-app cache stays.

A failure at any step ends the build `failed` with a one-line reason as its last output line;
no release is made, so the app's current release keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from dynomesh.stack import Interpreter
from dynomesh.sysusers import enterable_by_others

from controlplane.builds.buildpack import (BuildContext, Buildpack, BuildFailed, detected,
                                           indented, step)
from controlplane.builds import slugpack
from controlplane.builds.output import BuildOutput
from controlplane.builds.settings import BuildSettings
from controlplane.builds.shell import BuildShell, BuildUser
from controlplane.slugstore import ReceivedSlug, SlugRejected, SlugStore, adopt, inspect
from controlplane.store.models import Build


_SLUGPACK = Path(slugpack.__file__).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Built:
    slug: ReceivedSlug
    buildpack: str | None  # None: deployed as it is


def buildable(local: Sequence[Interpreter],
              reported: Sequence[Sequence[Interpreter]]) -> tuple[Interpreter, ...]:
    """The interpreters a build may use: on this node, and, once VMs have reported their
    stacks, offered by every one of them (a slug must run on whichever VM gets its dynos)."""
    offered = set(local)
    for vm in reported:
        if vm:
            offered &= set(vm)
    return tuple(sorted(offered, key=Interpreter.key, reverse=True))


def unpack_source(source: Path, app_dir: Path) -> None:
    """Check the archive by the slug rules and unpack it (root's until a buildpack runs)."""
    inspect(source)  # SlugRejected names the member or the Procfile problem
    app_dir.mkdir(mode=0o700)
    with tarfile.open(source, mode="r:gz") as archive:
        archive.extractall(app_dir, filter="data")


def give(root: Path, user: BuildUser) -> None:
    """Everything under `root` to the build user, before any of its commands runs."""
    if not user.switches:
        return
    os.lchown(root, user.uid, user.gid)
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(directory, name), user.uid, user.gid)


async def pack_as_builder(shell: BuildShell, app_dir: Path, into: Path,
                          stack: tuple[Interpreter, ...]) -> Path:
    """A .tar.gz of the directory's contents, packed by the build user (slugpack.py)."""
    if not stack:
        raise BuildFailed("the stack offers no Python to pack the slug with")
    target = into.parent / f"{into.name}.slug.tar.gz"  # beside work/<build>, root's alone
    # gzip's default level: level 9 took three times as long here for a slug 1 % smaller.
    ran = await shell.run_to_file([stack[0].path, "-I", "-c", _SLUGPACK, str(app_dir), "6"],
                                  cwd=app_dir, target=target)
    if ran.status != 0:
        target.unlink(missing_ok=True)
        raise BuildFailed("cannot pack the slug: " + (ran.tail[-1] if ran.tail
                                                      else f"exit status {ran.status}"))
    return target


def human_mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


class BuildRunner:
    def __init__(self, settings: BuildSettings, slugs: SlugStore,
                 user_for: Callable[[], Awaitable[BuildUser]],
                 buildpacks: Sequence[Buildpack]) -> None:
        """`user_for` gives the app's build user: asked only once a buildpack will run, so
        an app deployed as it is never gets one (system uids are few)."""
        self.settings = settings
        self.slugs = slugs
        self.user_for = user_for
        self.buildpacks = tuple(buildpacks)

    async def build(self, build: Build, source: Path, stack: tuple[Interpreter, ...],
                    output: BuildOutput) -> Built:
        """Raises BuildFailed (with the reason) for anything the user can mend."""
        work = self.settings.work / build.id
        try:
            return await self._build(build, source, work, stack, output)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
            (work.parent / f"{work.name}.slug.tar.gz").unlink(missing_ok=True)

    async def _build(self, build: Build, source: Path, work: Path,
                     stack: tuple[Interpreter, ...], output: BuildOutput) -> Built:
        work.mkdir(mode=0o700, parents=True)
        app_dir = work / "app"
        try:
            await asyncio.to_thread(unpack_source, source, app_dir)
        except SlugRejected as exc:
            raise BuildFailed(str(exc)) from exc
        except tarfile.TarError as exc:
            raise BuildFailed(f"the source archive cannot be unpacked: {exc}") from exc
        packs = detected(self.buildpacks, app_dir)
        if not packs:
            output.say(step("No buildpack detected (no requirements.txt or pyproject.toml): "
                            "deploying the directory as it is"))
            return Built(await adopt(self.slugs, source), None)
        user = await self.user_for()
        if user.switches and not enterable_by_others(work.parent):
            raise BuildFailed(f"the build user {user.name} cannot pass through "
                              f"{self.settings.root} or a directory above it: give "
                              "--builds-dir a directory others may enter (mode 0711 or 0755 "
                              "all the way down, like /var/lib/dynomesh/builds)")
        await asyncio.to_thread(give, work, user)
        cache = await asyncio.to_thread(self._cache_dir, build.app_id, user)
        shell = BuildShell(user, output.say, home=app_dir)
        ctx = BuildContext(app_dir, cache, stack, self.settings.pip, shell, output.say)
        running = packs[0]
        try:
            async with asyncio.timeout(self.settings.timeout):
                for running in packs:
                    await running.compile(ctx)
                output.say(step("Compressing the slug"))
                packed = await pack_as_builder(shell, app_dir, work, stack)
        except BuildFailed as exc:
            exc.buildpack = running.name
            raise
        except TimeoutError:
            shell.kill()
            minutes = self.settings.timeout / 60
            failed = BuildFailed(f"the build took longer than {minutes:g} minutes, the limit "
                                 "(--build-timeout)")
            failed.buildpack = running.name
            raise failed from None
        size = packed.stat().st_size
        if size > self.settings.max_slug_bytes:
            raise BuildFailed(f"the slug is {human_mb(size)} compressed, over the "
                              f"{human_mb(self.settings.max_slug_bytes)} limit: list what it "
                              "need not carry in .slugignore")
        output.say(indented(f"Done: {human_mb(size)}"))
        try:
            slug = await adopt(self.slugs, packed)
        except SlugRejected as exc:
            raise BuildFailed(f"the built slug is not usable: {exc}") from exc
        finally:
            packed.unlink(missing_ok=True)  # adopt removes it; this covers a failure before it
        return Built(slug, "+".join(p.name for p in packs))

    def _cache_dir(self, app_id: str, user: BuildUser) -> Path:
        cache = self.settings.cache / app_id
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        if user.switches:
            os.lchown(cache, user.uid, user.gid)
        return cache

