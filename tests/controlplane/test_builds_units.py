"""Builds' pure parts: the stack's choice of interpreter, relocatable scripts, pip's reasons,
the interpreters a build may use, pip options, a build's output, the cache key."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from controlplane.builds.output import KEPT_BYTES, BuildOutput
from controlplane.builds.python import cache_key, pip_failure, wanted_version
from controlplane.builds.relocate import PREAMBLE, rewrite_shebang
from controlplane.builds.runner import buildable
from controlplane.builds.settings import BuildSettings, PipOptions
from dynomesh.stack import Interpreter, NoSuchInterpreter, choose, others_can_use

pytestmark = pytest.mark.unit

PY311 = Interpreter("3.11.2", "/usr/bin/python3.11")
PY312 = Interpreter("3.12.1", "/usr/local/bin/python3.12")


def test_with_no_version_asked_the_newest_interpreter_is_chosen():
    assert choose([PY311, PY312], None) == PY312


@pytest.mark.parametrize("asked", ["3.11", "3.11.2", "python-3.11.2", "python3.11"])
def test_a_python_version_file_picks_the_interpreter_by_minor_or_full_version(asked):
    assert choose([PY311, PY312], asked) == PY311


def test_asking_for_a_python_the_stack_lacks_names_the_ones_it_offers():
    with pytest.raises(NoSuchInterpreter, match=r"Python 3\.9 is not on this stack; it offers "
                                                r"3\.12, 3\.11: name one of them in "
                                                r"\.python-version"):
        choose([PY311, PY312], "3.9")


def test_a_stack_without_python_says_what_to_install():
    with pytest.raises(NoSuchInterpreter, match="apt-get install python3"):
        choose([], None)


def _modes(table: dict[str, int]):
    return lambda path: table[str(path)]


def test_an_interpreter_under_a_directory_others_cannot_enter_is_not_usable():
    modes = {"/": 0o755, "/root": 0o700, "/root/.pyenv": 0o755,
             "/root/.pyenv/python3.12": 0o755 | stat.S_IFREG}
    assert not others_can_use(Path("/root/.pyenv/python3.12"), _modes(modes))
    modes["/root"] = 0o711
    assert others_can_use(Path("/root/.pyenv/python3.12"), _modes(modes))


def test_an_interpreter_others_cannot_run_is_not_usable():
    modes = {"/": 0o755, "/usr": 0o755, "/usr/bin": 0o755, "/usr/bin/python3.11": 0o750}
    assert not others_can_use(Path("/usr/bin/python3.11"), _modes(modes))


def test_a_build_uses_only_interpreters_every_reporting_vm_offers():
    other = Interpreter("3.11.2", "/opt/python/bin/python3.11")
    assert buildable([PY311, PY312], []) == (PY312, PY311)  # no VM reported yet: this node's
    assert buildable([PY311, PY312], [[PY311, PY312], [PY311], []]) == (PY311,)
    assert buildable([PY311], [[other]]) == ()


def test_a_console_script_of_the_build_venv_gets_a_preamble_that_finds_python_beside_it():
    script = b"#!/srv/builds/work/b1/app/.venv/bin/python3.11\nimport sys\nprint(1)\n"
    fixed = rewrite_shebang(script, b"/srv/builds/work/b1/app/.venv/bin")
    assert fixed == PREAMBLE % b"python3.11" + b"import sys\nprint(1)\n"
    assert fixed.startswith(b"#!/bin/sh\n")
    assert b"/srv/builds" not in fixed


@pytest.mark.parametrize("script", [
    b"#!/usr/bin/env python3\nprint(1)\n",        # not the venv's
    b"#!/other/.venv/bin/python\nprint(1)\n",     # another venv
    b"#!/srv/app/.venv/bin/bash\necho\n",         # not a python
    b"print(1)\n",                                # no #! at all
    b"#!/srv/app/.venv/bin/python",               # a #! line and nothing else
])
def test_scripts_that_do_not_run_on_the_build_venvs_python_are_left_alone(script):
    assert rewrite_shebang(script, b"/srv/app/.venv/bin") is None


def test_pip_not_finding_a_version_becomes_a_one_line_reason():
    tail = ("Looking in indexes: http://127.0.0.1:1/simple/",
            "ERROR: Could not find a version that satisfies the requirement flask==99 "
            "(from versions: 3.1.3)",
            "ERROR: No matching distribution found for flask==99")
    assert pip_failure(tail) == "pip could not find flask==99"
    assert pip_failure(tail[:2]) == "pip could not find flask==99"


def test_other_pip_errors_keep_pips_last_error_line():
    tail = ("Collecting x", "ERROR: Invalid requirement: 'flask=='")
    assert pip_failure(tail) == "pip failed: Invalid requirement: 'flask=='"
    assert pip_failure(("a traceback",)) == "pip failed; its output above says why"


def test_pip_options_use_the_index_or_only_the_wheel_directories():
    assert PipOptions().args() == []
    assert PipOptions("http://127.0.0.1:9/simple/").args() == [
        "--index-url", "http://127.0.0.1:9/simple/"]
    assert PipOptions(None, ("/w",)).args() == ["--no-index", "--find-links", "/w"]


def test_build_limits_must_be_positive():
    with pytest.raises(ValueError, match="--build-timeout"):
        BuildSettings(Path("/b"), timeout=0)
    with pytest.raises(ValueError, match="--build-max-slug"):
        BuildSettings(Path("/b"), max_slug_bytes=0)


def test_python_version_comes_from_python_version_then_runtime_txt(tmp_path):
    assert wanted_version(tmp_path) is None
    (tmp_path / "runtime.txt").write_text("python-3.11.2\n")
    assert wanted_version(tmp_path) == ("runtime.txt", "python-3.11.2")
    (tmp_path / ".python-version").write_text("# pinned\n3.12\n")
    assert wanted_version(tmp_path) == (".python-version", "3.12")


def test_the_cached_virtualenv_is_reused_only_for_the_same_python_and_requirements(tmp_path):
    (tmp_path / "requirements.txt").write_text("flask==3.1.3\n")
    key = cache_key(PY311, tmp_path)
    assert cache_key(PY311, tmp_path) == key
    assert cache_key(PY312, tmp_path) != key
    (tmp_path / "requirements.txt").write_text("flask==3.1.2\n")
    assert cache_key(PY311, tmp_path) != key


def test_a_follower_gets_every_line_then_the_end():
    async def scenario():
        output = BuildOutput()
        output.say("-----> Python app detected")
        got = []

        async def follow():
            async for line in output.follow():
                got.append(line)

        reader = asyncio.ensure_future(follow())
        await asyncio.sleep(0)  # one loop turn: the follower waits before the next lines come
        output.say("       Collecting flask")
        output.say("-----> Compressing the slug")
        output.finish()
        await reader
        return got
    assert asyncio.run(scenario()) == ["-----> Python app detected", "       Collecting flask",
                                       "-----> Compressing the slug"]


def test_kept_output_holds_the_newest_lines_and_says_how_many_were_cut():
    output = BuildOutput()
    line = "x" * 1023
    for number in range(KEPT_BYTES // 1024 + 10):
        output.say(f"{number:05d}{line[5:]}")
    text = output.text()
    assert text.startswith("(the first 10 lines were cut)\n00010")
    assert len(text) <= KEPT_BYTES + 100


def test_the_slug_packer_keeps_links_as_links_and_names_members_from_the_app_root(tmp_path):
    import io
    import os
    import tarfile

    from controlplane.builds.slugpack import pack

    (tmp_path / "Procfile").write_text("web: gunicorn app:app\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("binary")
    os.symlink("python", tmp_path / ".venv" / "bin" / "python3")
    out = io.BytesIO()
    pack(str(tmp_path), 6, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert sorted(members) == [".venv", ".venv/bin", ".venv/bin/python", ".venv/bin/python3",
                               "Procfile"]
    assert members[".venv/bin/python3"].issym()
    assert members[".venv/bin/python3"].linkname == "python"
