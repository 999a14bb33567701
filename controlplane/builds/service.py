"""A control node's builds: started by `POST /apps/{app}/builds`, run here as tasks.

Builds run on the control node that received the source (docs/architecture.md, "Builds"): a
subprocess per command as the build user, so a build needs no VM room and no new moving part.
Their output is held here while they run (`output(build_id)` for followers on this node) and
kept in the store when they end. A node that stops cancels its builds (each ends `failed`,
"interrupted"); one that crashed leaves them `pending`, and the next node to start fails the
pending builds of every node not seen lately (`fail_orphans`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

from dynomesh.stack import Interpreter, discover
from dynomesh.tasks import cancel_and_wait

from controlplane.applog import AppLog
from controlplane.builds.buildpack import Buildpack, BuildFailed, step
from controlplane.builds.output import BuildOutput
from controlplane.builds.python import PythonBuildpack
from controlplane.builds.runner import BuildRunner, buildable
from controlplane.builds.settings import BuildSettings
from controlplane.builds.user import BuildUserError, BuildUsers
from controlplane.slugstore import SlugStore
from controlplane.store import Store, errors
from controlplane.store.models import App, Build, VmState

log = logging.getLogger(__name__)

BUILDPACKS: tuple[Buildpack, ...] = (PythonBuildpack(),)
# A node that has not published its progress for this long is not running builds any more.
NODE_SILENCE = 60.0


class BuildsUnavailable(Exception):
    """This node cannot run builds; the message says why and what to do."""


def _reported(vm_stack: dict) -> list[Interpreter]:
    found = []
    for item in vm_stack.get("interpreters", []):
        try:
            found.append(Interpreter.from_json(item))
        except ValueError:
            continue  # checked when registered; an older row may hold something else
    return found


class BuildService:
    def __init__(self, store: Store, slugs: SlugStore, settings: BuildSettings,
                 applog: AppLog, node_id: str, *,
                 buildpacks: Sequence[Buildpack] = BUILDPACKS,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.slugs = slugs
        self.settings = settings
        self.applog = applog
        self.node_id = node_id
        self.buildpacks = tuple(buildpacks)
        self.clock = clock
        self.local: tuple[Interpreter, ...] = ()
        self.users = BuildUsers()
        self._why_not: str | None = "builds are starting"
        self._live: dict[str, BuildOutput] = {}
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Clear what a crash left in the build directories, learn this node's interpreters,
        and fail the builds that nodes which stopped left pending."""
        try:
            await asyncio.to_thread(self._clear_leftovers)
            self._why_not = None
        except OSError as exc:
            self._why_not = f"this control node cannot run builds: {exc}"
            log.error("control: %s", self._why_not)
        self.local = tuple(await asyncio.to_thread(discover))
        live = await self.store.nodes.seen_since(self.clock() - NODE_SILENCE)
        failed = await self.store.builds.fail_orphans(live | {self.node_id})
        if failed:
            log.info("control: %d build(s) interrupted by a stop were marked failed", failed)

    def _clear_leftovers(self) -> None:
        """What a crash left in work/ and incoming/ (their builds were failed above)."""
        for directory in (self.settings.work, self.settings.incoming):
            if not directory.is_dir():
                continue
            for leftover in directory.iterdir():
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)

    def _ensure_dirs(self) -> None:
        """Made at the first build, not at start: most control planes in tests never build."""
        s = self.settings
        s.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        for directory, mode in ((s.work, 0o711), (s.cache, 0o711), (s.incoming, 0o700)):
            directory.mkdir(mode=mode, exist_ok=True)

    def incoming_path(self, name: str) -> Path:
        if self._why_not is not None:
            raise BuildsUnavailable(self._why_not)
        try:
            self._ensure_dirs()
        except OSError as exc:
            raise BuildsUnavailable(f"cannot prepare {self.settings.root} for builds: "
                                    f"{exc.strerror or exc}") from exc
        return self.settings.incoming / f"{name}.tar.gz"

    def output(self, build_id: str) -> BuildOutput | None:
        """The live output of a build running on this node."""
        return self._live.get(build_id)

    async def begin(self, app: App, source: Path, checksum: str, who: str, *,
                    description: str | None = None) -> Build:
        """Record the build and start it; the source file is the build's from now on."""
        try:
            build = await self.store.builds.start(app.id, source_checksum=checksum,
                                                  node=self.node_id)
        except BaseException:
            source.unlink(missing_ok=True)
            raise
        output = BuildOutput()
        self._live[build.id] = output
        description = description or f"Deploy {checksum.removeprefix('sha256:')[:8]}"
        task = asyncio.create_task(self._run(app, build, source, output, who, description),
                                   name=f"build-{build.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return build

    async def _run(self, app: App, build: Build, source: Path, output: BuildOutput,
                   who: str, description: str) -> None:
        try:
            async def user_for():
                try:
                    return await self.users.for_app(app.name)
                except BuildUserError as exc:
                    raise BuildFailed(str(exc)) from exc

            runner = BuildRunner(self.settings, self.slugs, user_for, self.buildpacks)
            stack = buildable(self.local, [_reported(u.vm.stack)
                                           for u in await self.store.vms.list()
                                           if u.vm.state is VmState.READY])
            built = await runner.build(build, source, stack, output)
            output.say(step("Releasing"))
            slug = built.slug
            try:
                release = await self.store.builds.succeed(
                    build.id, buildpack=built.buildpack, output=output.text(), slug_id=slug.id,
                    checksum=slug.checksum, size=slug.size, process_types=slug.process_types,
                    description=description)
            except BaseException:
                self.slugs.remove([slug.id])  # not recorded: nothing may point at the file
                raise
            self.applog.write(app.name, f"{release.description} by {who}")
            self.applog.write(app.name, f"Release v{release.version} created by {who}")
        except BuildFailed as exc:
            await self._fail(build, output, exc.reason, exc.buildpack)
        except asyncio.CancelledError:
            await asyncio.shield(self._fail(build, output, "interrupted: the control plane "
                                            "stopped during the build; deploy again"))
            raise
        except errors.StoreError as exc:
            await self._fail(build, output, str(exc))
        except Exception as exc:  # a bug or the disk: said in one line, logged in full
            log.exception("control: build %s of %s failed", build.id, app.name)
            await self._fail(build, output, f"the platform failed during the build "
                             f"({type(exc).__name__}: {exc}); deploy again")
        finally:
            output.finish()
            self._live.pop(build.id, None)
            source.unlink(missing_ok=True)

    async def _fail(self, build: Build, output: BuildOutput, reason: str,
                    buildpack: str | None = None) -> None:
        output.say(f" !     Build failed: {reason}")
        try:
            await self.store.builds.fail(build.id, reason=reason, output=output.text(),
                                         buildpack=buildpack)
        except errors.StoreError as exc:  # the app was destroyed meanwhile, or the store is away
            log.warning("control: cannot record build %s as failed: %s", build.id, exc)

    async def close(self) -> None:
        """Stop every build of this node (each is recorded as interrupted)."""
        try:
            await cancel_and_wait(*self._tasks)  # each records itself as interrupted, side by side
        except Exception:  # a bug in a build's clean-up: logged, and the node stops all the same
            log.exception("control: a build failed while being interrupted")
