"""The Python buildpack: `requirements.txt` (or a `pyproject.toml` project) → a virtualenv in
the slug at `.venv/`, on one of the stack's interpreters; dynos have `.venv/bin` first on PATH.

As Heroku's Python buildpack: `.python-version` (or the older `runtime.txt`, `python-3.11.2`)
picks the interpreter; the virtualenv is cached per app and reused when the interpreter and
the requirements are unchanged (pip then finds everything already satisfied, in seconds); pip's
own wheel and HTTP cache is kept too, for when they change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dynomesh.stack import Interpreter, NoSuchInterpreter, choose

from controlplane.builds import relocate
from controlplane.builds.buildpack import BuildContext, BuildFailed, Ran, indented, step

VENV = ".venv"
REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
VERSION_FILES = (".python-version", "runtime.txt")
_PIP_QUIET = ["--disable-pip-version-check", "--no-input", "--progress-bar", "off"]


def wanted_version(app_dir: Path) -> tuple[str, str] | None:
    """(file, version text) from `.python-version` or `runtime.txt`, or None."""
    for name in VERSION_FILES:
        path = app_dir / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            text = line.split("#", 1)[0].strip()
            if text:
                return name, text
    return None


def cache_key(interpreter: Interpreter, app_dir: Path) -> str:
    """What the cached virtualenv was built from: the interpreter and the requirement files."""
    digest = hashlib.sha256(f"{interpreter.path} {interpreter.version}\n".encode())
    for name in (REQUIREMENTS, PYPROJECT):
        path = app_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()


def pip_failure(tail: tuple[str, ...]) -> str:
    """One line saying why pip failed, from its last lines."""
    for line in reversed(tail):
        text = line.strip()
        if "No matching distribution found for" in text:
            return "pip could not find " + text.rsplit("found for", 1)[1].strip()
        if text.startswith("ERROR: Could not find a version that satisfies the requirement"):
            wanted = text.split("requirement", 1)[1].split("(", 1)[0].strip()
            return f"pip could not find {wanted}"
    for line in reversed(tail):
        if line.strip().startswith("ERROR:"):
            return "pip failed: " + line.strip().removeprefix("ERROR:").strip()
    return "pip failed; its output above says why"


class PythonBuildpack:
    name = "python"

    def detect(self, app_dir: Path) -> bool:
        return (app_dir / REQUIREMENTS).is_file() or (app_dir / PYPROJECT).is_file()

    def release(self, app_dir: Path) -> dict[str, str]:
        return {}  # the Procfile names the processes

    async def compile(self, ctx: BuildContext) -> None:
        ctx.say(step("Python app detected"))
        interpreter = self._interpreter(ctx)
        ctx.say(step(f"Using Python {interpreter.version} ({interpreter.path})"))
        venv = ctx.app_dir / VENV
        if venv.exists() or venv.is_symlink():
            ctx.say(step(f"Removing the uploaded {VENV}: the build makes its own"))
            await self._must(ctx, ["rm", "-rf", "--", VENV], "cannot remove the uploaded .venv")
        key = cache_key(interpreter, ctx.app_dir)
        restored = await self._restore(ctx, key)
        if restored:
            ctx.say(step("Reusing the virtualenv of the last build (same Python, same "
                         "requirements)"))
        else:
            ctx.say(step(f"Creating a virtualenv on Python {interpreter.version}"))
            await self._must(ctx, [interpreter.path, "-m", "venv", "--copies", VENV],
                             f"cannot create a virtualenv with {interpreter.path}")
        await self._install(ctx)
        await self._must(ctx, [str(venv / "bin" / "python"), "-I", "-c", _relocate_source(),
                               VENV], "cannot make the virtualenv relocatable", echo=False)
        if not restored:  # a restored one is what the cache holds already
            await self._save(ctx, key)

    def _interpreter(self, ctx: BuildContext) -> Interpreter:
        wanted = wanted_version(ctx.app_dir)
        try:
            return choose(list(ctx.stack), wanted[1] if wanted else None)
        except NoSuchInterpreter as exc:
            where = f" (asked for in {wanted[0]})" if wanted else ""
            raise BuildFailed(f"{exc}{where}") from None

    async def _install(self, ctx: BuildContext) -> None:
        python = str(ctx.app_dir / VENV / "bin" / "python")
        env = {"PIP_CACHE_DIR": str(ctx.cache_dir / "pip")}
        if (ctx.app_dir / REQUIREMENTS).is_file():
            ctx.say(step("Installing requirements with pip"))
            target = ["-r", REQUIREMENTS]
        else:
            ctx.say(step(f"Installing the project in {PYPROJECT} with pip"))
            target = ["."]
        ran = await ctx.shell.run([python, "-m", "pip", "install", *_PIP_QUIET,
                                   *ctx.pip.args(), *target], cwd=ctx.app_dir, env=env)
        if ran.status != 0:
            raise BuildFailed(pip_failure(ran.tail))

    async def _restore(self, ctx: BuildContext, key: str) -> bool:
        cached, stamp = ctx.cache_dir / VENV, ctx.cache_dir / "venv.key"
        try:
            if not (cached.is_dir() and stamp.read_text().strip() == key):
                return False
        except OSError:
            return False
        ran = await ctx.shell.run(["cp", "-a", "--", str(cached), VENV], cwd=ctx.app_dir,
                                  echo=False)
        return ran.status == 0

    async def _save(self, ctx: BuildContext, key: str) -> None:
        """Keep this virtualenv for the next build; a failure here only costs time later."""
        script = ('rm -rf -- "$1/.venv.new" "$1/venv.key" && cp -a -- .venv "$1/.venv.new" && '
                  'rm -rf -- "$1/.venv" && mv -- "$1/.venv.new" "$1/.venv" && '
                  'printf "%s\\n" "$2" > "$1/venv.key"')
        ran = await ctx.shell.run(["sh", "-c", script, "save", str(ctx.cache_dir), key],
                                  cwd=ctx.app_dir, echo=False)
        if ran.status != 0:
            ctx.say(indented("(could not cache the virtualenv for the next build: "
                             f"{' '.join(ran.tail[-1:])})"))

    @staticmethod
    async def _must(ctx: BuildContext, argv: list[str], what: str, *, echo: bool = True) -> Ran:
        ran = await ctx.shell.run(argv, cwd=ctx.app_dir, echo=echo)
        if ran.status != 0:
            detail = ran.tail[-1].strip() if ran.tail else f"exit status {ran.status}"
            raise BuildFailed(f"{what}: {detail}")
        return ran


def _relocate_source() -> str:
    return Path(relocate.__file__).read_text(encoding="utf-8")
