"""The buildpack contract, after Heroku's bin/detect, bin/compile and bin/release (and Cloud
Native Buildpacks' detect/build): every buildpack that recognises the app runs, in order.

- `detect(app_dir)`: does this buildpack apply? (reads files only; no commands)
- `compile(ctx)`: turn the app directory into a runnable slug, in place, running commands as
  the build user through `ctx.shell`; a failure raises `BuildFailed` with a one-line reason.
- `release(app_dir)`: default process types, used where the Procfile names none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from dynomesh.stack import Interpreter

from controlplane.builds.settings import PipOptions


class BuildFailed(Exception):
    """The build cannot go on; `reason` is one line for the user (no trace)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.buildpack: str | None = None  # the one that failed, once known


class Shell(Protocol):
    async def run(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None,
                  echo: bool = True) -> "Ran": ...


@dataclass(frozen=True)
class Ran:
    status: int
    tail: tuple[str, ...]  # its last lines, for the reason of a failure


@dataclass(frozen=True)
class BuildContext:
    app_dir: Path  # the fresh build directory, owned by the build user
    cache_dir: Path  # kept between this app's builds, owned by the build user
    stack: tuple[Interpreter, ...]  # what every dyno can run, newest first
    pip: PipOptions
    shell: Shell
    say: Callable[[str], None]  # one line of build output


class Buildpack(Protocol):
    name: str

    def detect(self, app_dir: Path) -> bool: ...

    async def compile(self, ctx: BuildContext) -> None: ...

    def release(self, app_dir: Path) -> dict[str, str]: ...


def detected(buildpacks: Sequence[Buildpack], app_dir: Path) -> list[Buildpack]:
    return [bp for bp in buildpacks if bp.detect(app_dir)]


def step(text: str) -> str:
    """Heroku's step line: `-----> Installing requirements with pip`."""
    return f"-----> {text}"


def indented(text: str) -> str:
    """A tool's own line under a step, as Heroku indents pip's."""
    return f"       {text}"
