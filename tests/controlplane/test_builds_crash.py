"""A control plane killed in the middle of a build: no app or release is lost, the build's pip
does not run on, and the control plane marks the build failed when it starts again."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from controlplane.builds.user import PREFIX
from dynomesh.sysusers import lookup, user_name
from tests.conftest import dynomesh_argv
from tests.controlplane.harness import ControlPlane
from tests.e2e.harness import ProcessLines, poll

APP = "crashbuild"


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except FileNotFoundError:
                continue  # exited meanwhile
    return found


@pytest.fixture
def silent_index():
    """An index that accepts connections and never answers: pip waits on it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple/"
    server.close()


@pytest.fixture
def parent():
    """Holds the home and the builds (the build user passes through it to its work dir)."""
    path = Path(tempfile.mkdtemp(prefix="dynomesh-crash-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_build_cut_by_a_crash_is_failed_at_the_next_start_and_nothing_else_lost(
        parent, silent_index, tmp_path):
    plane = ControlPlane(parent / "home", extra_args=(
        "--build-pip-index-url", silent_index, "--builds-dir", str(parent / "builds"))).start()
    source = tmp_path / "app"
    source.mkdir()
    (source / "Procfile").write_text("web: gunicorn app:app\n")
    (source / "requirements.txt").write_text("flask==3.1.3\n")
    try:
        assert plane.cli("apps:create", APP, "--no-link").returncode == 0
        deploy = ProcessLines(dynomesh_argv("deploy", str(source), "--app", APP),
                              plane.env(), name="deploy")
        deploy.wait_for(r"^-----> Installing requirements with pip$", timeout=300)
        plane.kill()
        assert deploy.proc.wait(timeout=60) != 0  # the CLI lost the control plane
    finally:
        plane.kill()
    if os.geteuid() == 0:
        uid = lookup(user_name(PREFIX, APP)).pw_uid
        poll(lambda: not processes_of(uid), "the build's pip to die with the control plane")

    plane.start()
    try:
        builds = json.loads(plane.cli("builds", "--app", APP, "--json").stdout)
        assert [(b["status"], b["reason"]) for b in builds] == [
            ("failed", "interrupted: the control plane stopped during the build; deploy again")]
        assert json.loads(plane.cli("releases", "--app", APP, "--json").stdout) == []
        assert plane.cli("apps:info", "--app", APP).returncode == 0
        work = parent / "builds" / "work"
        assert not work.exists() or list(work.iterdir()) == []
    finally:
        plane.stop()
