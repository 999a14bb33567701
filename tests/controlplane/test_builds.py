"""Builds with real pip against wheels served on loopback (tests/wheelindex.py): the Python
buildpack's virtualenv runs where a dyno unpacks it, the cache is reused, failures say why,
and the limits hold. Run as root, builds run as the app's unprivileged build user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from controlplane.builds.buildpack import BuildContext, BuildFailed
from controlplane.builds.output import BuildOutput
from controlplane.builds.python import PythonBuildpack
from controlplane.builds.runner import BuildRunner
from controlplane.builds.settings import BuildSettings, PipOptions
from controlplane.builds.user import BuildUsers
from controlplane.cli.pack import pack
from controlplane.slugstore import LocalSlugStore
from controlplane.store.models import Build, BuildStatus
from dynomesh.stack import discover
from tests.e2e.harness import alive
from tests.wheelindex import WheelIndex, require_wheels, wheelhouse

APP = "buildtest"
FLASK_APP = {
    "Procfile": "web: gunicorn app:app\n",
    "requirements.txt": "flask==3.1.3\ngunicorn==26.2.0\n",
    "app.py": "from flask import Flask\napp = Flask(__name__)\n",
}


@pytest.fixture(scope="module")
def index():
    require_wheels()
    with WheelIndex(wheelhouse()) as served:
        yield served


@pytest.fixture
def root():
    """A directory the build user can pass through (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="dynomesh-builds-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Builder:
    def __init__(self, root: Path, pip: PipOptions, **limits) -> None:
        self.root = root
        self.settings = BuildSettings(root / "builds", pip=pip, **limits)
        self.slugs = LocalSlugStore(root / "slugs")
        self.slugs.incoming.prepare()
        self.count = 0

    async def build(self, files: dict[str, str], *, buildpacks=(PythonBuildpack(),)):
        """(Built or the BuildFailed, the output lines)."""
        self.count += 1
        for directory in (self.settings.work, self.settings.cache):
            directory.mkdir(mode=0o711, parents=True, exist_ok=True)
        source_dir = self.root / f"source{self.count}"
        source_dir.mkdir()
        for name, text in files.items():
            (source_dir / name).write_text(text)
        packed = pack(source_dir)
        source = self.root / f"source{self.count}.tar.gz"
        shutil.move(packed.path, source)
        users = BuildUsers()
        runner = BuildRunner(self.settings, self.slugs, lambda: users.for_app(APP), buildpacks)
        build = Build(f"build-{self.count}", "app-1", self.count, BuildStatus.PENDING,
                      f"sha256:{packed.sha256}", None, None, None, None, "node", "", None)
        output = BuildOutput()
        try:
            result = await runner.build(build, source, tuple(discover()), output)
        except BuildFailed as exc:
            result = exc
        return result, output.lines

    def unpack(self, slug_id: str, into: Path) -> Path:
        """As a dyno does: the slug in a directory of its own, elsewhere than the build's."""
        into.mkdir()
        with tarfile.open(self.slugs.path(slug_id)) as archive:
            archive.extractall(into, filter="tar")
        return into


@pytest.fixture
def builder(root, index):
    return Builder(root, PipOptions(index.url))


async def test_a_flask_app_builds_into_a_virtualenv_that_runs_unpacked_and_a_rebuild_reuses_it(
        builder, root):
    built, lines = await builder.build(FLASK_APP)
    assert built.buildpack == "python", lines
    assert lines[0] == "-----> Python app detected"
    assert "-----> Installing requirements with pip" in lines
    assert any(line.startswith("       Successfully installed") and "flask-3.1.3" in line
               for line in lines)
    # No path of the build is left in the scripts: they run from the dyno's own directory.
    app = builder.unpack(built.slug.id, root / "dyno")
    assert not (root / "builds" / "work").exists() or not any((root / "builds" / "work").iterdir())
    gunicorn = app / ".venv" / "bin" / "gunicorn"
    assert str(root / "builds").encode() not in gunicorn.read_bytes()
    env = {"PATH": f"{app / '.venv' / 'bin'}:/usr/bin:/bin"}
    version = subprocess.run(["gunicorn", "--version"], env=env, cwd=app, capture_output=True,
                             text=True, timeout=60)
    assert version.returncode == 0 and "26.2.0" in version.stdout + version.stderr
    flask = subprocess.run(["python", "-c", "import flask, sys; print(sys.prefix)"], env=env,
                           cwd=app, capture_output=True, text=True, timeout=60)
    assert flask.stdout.strip() == str(app / ".venv"), flask.stderr

    # A rebuild with the same requirements reuses the virtualenv (one pip install per test
    # module is what CI can afford).
    assert any("Downloading" in line for line in lines)
    second, lines = await builder.build({**FLASK_APP, "app.py": FLASK_APP["app.py"] + "# v2\n"})
    assert second.buildpack == "python", lines
    assert "-----> Reusing the virtualenv of the last build (same Python, same requirements)" \
        in lines
    assert any("Requirement already satisfied: flask==3.1.3" in line for line in lines)
    assert not any("Downloading" in line or "Installing collected" in line for line in lines)


async def test_a_pyproject_project_is_installed_into_the_virtualenv(builder, root):
    project = {
        "Procfile": "web: greet\n",
        "pyproject.toml": ('[build-system]\nrequires = ["setuptools"]\n'
                           'build-backend = "setuptools.build_meta"\n\n'
                           '[project]\nname = "greeter"\nversion = "1.0"\n'
                           'dependencies = ["gunicorn==26.2.0"]\n\n'
                           '[project.scripts]\ngreet = "greeter:main"\n'),
        "greeter.py": "def main():\n    print('hello from greeter')\n",
    }
    built, lines = await builder.build(project)
    assert built.buildpack == "python", lines
    assert "-----> Installing the project in pyproject.toml with pip" in lines
    app = builder.unpack(built.slug.id, root / "dyno")
    env = {"PATH": f"{app / '.venv' / 'bin'}:/usr/bin:/bin"}
    greet = subprocess.run(["greet"], env=env, cwd="/", capture_output=True, text=True,
                           timeout=60)
    assert greet.stdout == "hello from greeter\n", greet.stderr
    assert (app / ".venv" / "bin" / "gunicorn").is_file()


async def test_a_requirement_pip_cannot_find_fails_the_build_with_that_reason(builder):
    failed, lines = await builder.build({**FLASK_APP, "requirements.txt": "flask==99\n"})
    assert isinstance(failed, BuildFailed)
    assert failed.reason == "pip could not find flask==99"
    assert failed.buildpack == "python"


async def test_a_python_the_stack_lacks_fails_the_build_naming_the_ones_it_has(builder):
    failed, _ = await builder.build({**FLASK_APP, ".python-version": "2.7\n"})
    minor = discover()[0].minor
    assert isinstance(failed, BuildFailed)
    assert failed.reason.startswith("Python 2.7 is not on this stack; it offers ")
    assert minor in failed.reason and failed.reason.endswith("(asked for in .python-version)")


async def test_a_directory_no_buildpack_detects_is_the_slug_as_it_is(builder):
    built, lines = await builder.build({"Procfile": "web: python web.py\n", "web.py": "1\n"})
    assert built.buildpack is None
    assert lines == ["-----> No buildpack detected (no requirements.txt or pyproject.toml): "
                     "deploying the directory as it is"]
    assert built.slug.process_types == {"web": "python web.py"}


class Bulky:
    """A buildpack whose compile leaves 2 MB that no compression shrinks."""
    name = "bulky"

    def detect(self, app_dir):
        return True

    def release(self, app_dir):
        return {}

    async def compile(self, ctx: BuildContext):
        await ctx.shell.run(["sh", "-c", "head -c 2097152 /dev/urandom > blob"], cwd=ctx.app_dir)


async def test_a_slug_over_the_size_limit_fails_the_build(root, index):
    builder = Builder(root, PipOptions(index.url), max_slug_bytes=1024 * 1024)
    failed, _ = await builder.build({"Procfile": "web: python web.py\n"}, buildpacks=(Bulky(),))
    assert isinstance(failed, BuildFailed)
    assert "compressed, over the 1.0 MB limit" in failed.reason


class Stuck:
    """A buildpack whose compile never ends on its own; it says who runs it and its pid."""
    name = "stuck"

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file

    def detect(self, app_dir):
        return True

    def release(self, app_dir):
        return {}

    async def compile(self, ctx: BuildContext):
        await ctx.shell.run(["sh", "-c", f"id -u; echo $$ > {self.pid_file}; exec sleep 600"],
                            cwd=ctx.app_dir)


async def test_a_build_past_its_time_limit_fails_and_its_processes_are_ended(root, index):
    builder = Builder(root, PipOptions(index.url), timeout=3.0)
    watch = root / "watch"
    watch.mkdir()
    watch.chmod(0o777)  # the build user writes the pid there
    failed, lines = await builder.build(FLASK_APP, buildpacks=(Stuck(watch / "pid"),))
    assert isinstance(failed, BuildFailed)
    assert failed.reason == "the build took longer than 0.05 minutes, the limit " \
                            "(--build-timeout)"
    assert failed.buildpack == "stuck"
    pid = int((watch / "pid").read_text())
    assert not alive(pid), "the build's process outlived its time limit"
    uid = int(lines[0].strip())
    if os.geteuid() == 0:
        assert uid != 0 and uid == (await BuildUsers().for_app(APP)).uid


@pytest.mark.skipif(os.geteuid() != 0, reason="builds run as another user only as root")
async def test_builds_where_the_build_user_cannot_enter_fail_naming_the_flag(root, index):
    private = root / "private"
    private.mkdir(mode=0o700)
    builder = Builder(private, PipOptions(index.url))
    failed, _ = await builder.build(FLASK_APP)
    assert isinstance(failed, BuildFailed)
    assert failed.reason.startswith(f"the build user build-{APP} cannot pass through "
                                    f"{private / 'builds'}")
    assert "--builds-dir" in failed.reason
