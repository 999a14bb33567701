"""dynomesh as installed, not as checked out: a wheel built from this tree, installed into a
fresh virtualenv outside it, must import every module and run every command.

The suite itself runs from the checkout (`pythonpath = ["."]`), so without this test a module
left out of the wheel, or code that finds its siblings through the checkout's layout, would
pass every other test and break for every user who runs `pip install dynomesh`.

Building the wheel needs no network (`--no-build-isolation`, with the pinned setuptools of the
test install). The fresh venv has no pip and gets the third-party dependencies through one
`.pth` line naming this interpreter's site-packages: a plain path line, so the editable install
of the checkout that lives there (a `.pth` hook) is not activated. `.ci/run` additionally
installs the wheel with its dependencies from the index, as a user would.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port
from tests.e2e.harness import ProcessLines, shared_tmpdir

pytestmark = pytest.mark.functional

# The top-level packages a wheel must carry; nothing else at the top level is importable.
PACKAGES = ("dynomesh", "router", "dynomgr", "controlplane", "onebox")
# What a source copy leaves out: local state, caches and earlier build output (a stale build/
# would put modules deleted from the tree back into the wheel).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".hypothesis", ".dynomesh", "results")


@dataclass(frozen=True)
class Installed:
    venv: Path
    workdir: Path  # outside the checkout: the current directory of everything run from here

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def command(self) -> str:
        return str(self.venv / "bin" / "dynomesh")

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", **extra)
        return env

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=self.workdir, env=self.env(), capture_output=True,
                              text=True, timeout=timeout)


def checkout_modules() -> set[str]:
    """Every module of every package in the checkout, as dotted names."""
    names = set()
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def prebuilt_wheel() -> Path | None:
    """The wheel `.ci/run` has just built from this same tree (`DYNOMESH_TEST_WHEEL`), so CI
    compiles the router's modules for a wheel once, not twice."""
    named = os.environ.get("DYNOMESH_TEST_WHEEL")
    if not named:
        return None
    wheel = Path(named)
    assert wheel.is_file(), f"DYNOMESH_TEST_WHEEL={named} is not a file"
    return wheel


def build_wheel(work: Path) -> Path:
    """A wheel built from a copy of the checkout's sources (never its build output)."""
    source, wheels = work / "source", work / "wheels"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(wheels), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("dynomesh-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("installed")
    venv = work / "venv"
    wheel = prebuilt_wheel() or build_wheel(work)

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    site = Path(subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    workdir = work / "elsewhere"
    workdir.mkdir()
    return Installed(venv, workdir)


def test_the_wheel_carries_every_module_and_imports_it_from_the_install(installed):
    wanted = sorted(checkout_modules())
    # A `__main__` module runs when imported: it is found, not imported (the command tests
    # below run it).
    script = ("import importlib, importlib.util, json, sys\n"
              "found = {}\n"
              "for name in sys.argv[1:]:\n"
              "    try:\n"
              "        found[name] = (importlib.util.find_spec(name).origin\n"
              "                       if name.endswith('__main__')\n"
              "                       else importlib.import_module(name).__file__)\n"
              "    except Exception as error:\n"
              "        found[name] = f'{type(error).__name__}: {error}'\n"
              "print(json.dumps(found))\n")
    done = installed.run(installed.python, "-c", script, *wanted, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    outside = {name: where for name, where in found.items()
               if not str(where).startswith(str(installed.venv))}
    assert outside == {}, "modules missing from the wheel or imported from elsewhere"
    # Only the packages land at the top of site-packages (beside the wheel's metadata and this
    # venv's `.pth` line): no stray module, compiled or not, no data directory.
    site = Path(found["dynomesh"]).parent.parent
    top = {path.name for path in site.iterdir()
           if path.suffix not in (".dist-info", ".pth") and path.name != "__pycache__"}
    assert top == set(PACKAGES), f"importable from the top of site-packages: {sorted(top)}"


def test_the_installed_command_explains_itself(installed):
    usage = installed.run(installed.command, "--help")
    assert usage.returncode == 0, usage.stderr
    assert "dynomesh up" in usage.stdout and "router" in usage.stdout
    up = installed.run(installed.command, "up", "--help")
    assert up.returncode == 0, up.stderr
    assert "--home" in up.stdout
    module = installed.run(installed.python, "-m", "dynomesh", "--help")
    assert module.returncode == 0 and module.stdout == usage.stdout


class _Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = f"backend saw {self.path} via {self.headers['Via']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass  # the router's log line is what the test reads


@pytest.fixture
def backend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_installed_router_routes_a_request(installed, backend, tmp_path):
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"apps": [{"name": "app1", "hosts": ["app1.localhost"],
                                            "dynos": [{"name": "web.1", "address": backend}]}]}))
    port = free_port()
    router = ProcessLines([installed.command, "router", "--listen", f"127.0.0.1:{port}",
                           "--admin", "off", "--routes", str(routes)], installed.env(),
                          name="installed router")
    try:
        # The wheel carries the compiled hot path, built from the sources it ships beside it.
        router.wait_for(r"ready on http://127\.0\.0\.1:\d+ .*; hot path compiled$", timeout=60)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/hello",
                                         headers={"Host": "app1.localhost"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert response.read() == b"backend saw /hello via 1.1 dynomesh"
        router.wait_for(r'heroku\[router\]: at=info method=GET path="/hello" .* status=200')
    finally:
        assert router.stop(signal.SIGTERM) == 0


def test_the_installed_up_starts_every_part(installed):
    """`dynomesh up` from the installed copy: each part is started by the installed command,
    not from a checkout on PYTHONPATH, and all three come up and stop cleanly."""
    home = shared_tmpdir("dynomesh-installed-")
    ports = {name: free_port() for name in ("api", "http", "router", "dynomgr")}
    up = ProcessLines([installed.command, "up", "--home", str(home),
                       "--api", f"127.0.0.1:{ports['api']}", "--http", f"127.0.0.1:{ports['http']}",
                       "--router-admin", f"127.0.0.1:{ports['router']}",
                       "--dynomgr-admin", f"127.0.0.1:{ports['dynomgr']}",
                       "--data-dir", str(home / "dynos")], installed.env(), name="installed up")
    try:
        up.wait_for(r"up +\| dynomesh is up:", timeout=120)
        for port in (ports["router"], ports["dynomgr"]):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
                assert answer.status == 200
        assert not up.matches(r"exited with status|Traceback|ModuleNotFoundError")
    finally:
        code = up.stop(signal.SIGTERM, timeout=90)
        shutil.rmtree(home, ignore_errors=True)
    assert code == 0
    assert re.search(r"up +\| stopped$", up.lines[-1]), up.lines[-10:]
