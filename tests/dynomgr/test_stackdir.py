"""The dyno environment: PATH from the slug's own directories and the stack, never the agent's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dynomesh.stack import Interpreter
from dynomgr.stackdir import DynoStack, link_aliases

pytestmark = pytest.mark.unit

PY311 = Interpreter("3.11.2", "/usr/bin/python3.11")


def test_path_puts_the_slugs_venv_and_bin_first_then_the_stack_then_the_system(tmp_path):
    app = tmp_path / "web.1"
    (app / ".venv" / "bin").mkdir(parents=True)
    (app / "bin").mkdir()
    stack = DynoStack((PY311,), tmp_path / "stack" / "bin", ("/usr/bin", "/bin"))
    assert stack.env_for(app) == {
        "PATH": f"{app}/.venv/bin:{app}/bin:{tmp_path}/stack/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8"}


def test_path_leaves_out_what_the_slug_does_not_have_and_a_stack_without_python(tmp_path):
    stack = DynoStack((), None, ("/usr/local/bin", "/usr/bin", "/bin"))
    assert stack.path_for(tmp_path) == "/usr/local/bin:/usr/bin:/bin"


def test_the_stack_bin_gives_python_and_python3_and_follows_a_new_interpreter(tmp_path):
    bin_dir = tmp_path / "stack" / "bin"
    link_aliases(bin_dir, PY311)
    assert os.readlink(bin_dir / "python") == "/usr/bin/python3.11"
    assert os.readlink(bin_dir / "python3") == "/usr/bin/python3.11"
    assert oct(bin_dir.stat().st_mode & 0o777) == "0o755"
    link_aliases(bin_dir, Interpreter("3.12.1", "/usr/local/bin/python3.12"))
    assert os.readlink(bin_dir / "python") == "/usr/local/bin/python3.12"
    link_aliases(bin_dir, None)
    assert not (bin_dir / "python").is_symlink() and sorted(os.listdir(bin_dir)) == []


def test_the_registration_reports_the_interpreters():
    assert DynoStack((PY311,), Path("/d/stack/bin"), ()).report() == {
        "interpreters": [{"version": "3.11.2", "path": "/usr/bin/python3.11"}]}
