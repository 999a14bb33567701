"""The README's walk-throughs ("Try it", "Deploy a Python app"), run line by line as written
against `dynomesh up`.

Only what cannot be the same here changes: the router's port (tests never take 8080) and
`$PWD/.venv/bin` (this checkout's `dynomesh` command). Each command must succeed; each `curl`
must get the answer its comment promises (retried for a bounded while: a release's dynos
restart a moment after the command returns).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.harness import poll
from tests.wheelindex import require_wheels

pytestmark = pytest.mark.timeout(240)

# What each curl of the walk-through must print, in order.
CURL_ANSWERS = [
    r"^Hello from web\.[123]$",
    r"^hi from web\.[123]$",
    r"^hi from web\.[123]$",  # www.example.test
]


def walk_through(section: str = "Try it") -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split(f"\n## {section}\n", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def cli_env(platform, tmp_path) -> dict[str, str]:
    """The walk-through's shell: `dynomesh` on PATH as `pip install -e .` would put it, and a
    copy of examples/ in the working directory."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "dynomesh"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m dynomesh \"$@\"\n")
    wrapper.chmod(0o755)
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns(".dynomesh"))
    return dict(platform.cli.env, PWD=str(tmp_path), PATH=f"{bin_dir}:{os.environ['PATH']}")


def run_line(line: str, env: dict[str, str], cwd, port: int, promise: str | None, *,
             answer_within: float, timeout: float) -> None:
    """One line as written (the router's port aside): a curl must come to print its promise
    (a release's dynos restart a moment after the command returns); any other command must
    succeed, and print its promise if it has one."""
    command = line.split("  #")[0].strip().replace(":8080", f":{port}")
    if command.startswith("curl "):
        if promise is None:
            return

        def answered():
            done = subprocess.run(["bash", "-c", command + " -s"], env=env, cwd=cwd,
                                  capture_output=True, text=True, timeout=90)
            return re.search(promise, done.stdout, re.M)

        poll(answered, f"`{command}` to print {promise}", timeout=answer_within)
        return
    done = subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"`{command}`:\n{done.stdout}\n{done.stderr}"
    if promise is not None:
        assert re.search(promise, done.stdout, re.M), f"`{command}`:\n{done.stdout}"


def test_the_readme_walk_through_works_as_written(platform, tmp_path):
    port = platform.up.http_port
    env = cli_env(platform, tmp_path)
    lines = walk_through()
    assert lines[0] == "export PATH=$PWD/.venv/bin:$PATH"
    answers = iter(CURL_ANSWERS)
    try:
        for line in lines[1:]:
            promise = next(answers, None) if line.startswith("curl ") else None
            run_line(line, env, tmp_path, port, promise, answer_within=30, timeout=120)
        # The last steps' promises: H14 once web is scaled to zero.
        poll(lambda: platform.router.answers("hello", lambda r: b"<code>H14</code>" in r.body),
             "H14 after ps:scale web=0")
    finally:
        platform.cli.run("apps:destroy", "--app", "hello", "--confirm", "hello")
        poll(lambda: not platform.agent_dynos("hello"), "hello's dynos to stop")
    assert next(answers, None) is None, "the README has fewer curls than this test expects"


# What the "Deploy a Python app" section promises, line by line (None: it only must succeed).
PYTHON_PROMISES = [
    None,                                      # apps:create
    r"^-----> Python app detected$",          # deploy
    r"^Hello from Flask on web\.1$",           # curl
    r"^1 +succeeded +python +v1 ",            # builds
    r"^-----> Installing requirements with pip$",  # builds:output 1
    r"^-----> Reusing the virtualenv of the last build",  # deploy again
    r"/usr/\S*python3",                        # stack
    None,                                      # apps:destroy
]


def test_the_readme_python_section_works_as_written(platform, tmp_path):
    require_wheels()
    port = platform.up.http_port
    env = cli_env(platform, tmp_path)
    lines = walk_through("Deploy a Python app")
    assert len(lines) == len(PYTHON_PROMISES), "the README's Python section changed"
    try:
        for line, promise in zip(lines, PYTHON_PROMISES):
            run_line(line, env, tmp_path, port, promise, answer_within=90, timeout=400)
    finally:
        platform.cli.run("apps:destroy", "--app", "flaskapp", "--confirm", "flaskapp")
        poll(lambda: not platform.agent_dynos("flaskapp"), "flaskapp's dynos to stop")
