"""CLI pieces without a control plane: help texts, slug packing rules, progress output."""

from __future__ import annotations

import io
import tarfile

import pytest

from controlplane.cli import main
from controlplane.cli.output import Progress
from controlplane.cli.pack import NotDeployable, SlugIgnore, pack
from controlplane.cli.registry import COMMANDS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name, capsys):
    assert COMMANDS[name].run is not None
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert f"usage: dynomesh {name}" in text
    assert "example:\n  dynomesh " in text


def test_help_lists_every_command(capsys):
    assert main(["help"]) == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n  {name} " in text


def test_a_bad_option_is_a_usage_error(capsys):
    assert main(["releases", "--num", "many"]) == 2


@pytest.mark.parametrize("pattern, path, is_dir, ignored", [
    ("*.pyc", "a/b/c.pyc", False, True),
    ("*.pyc", "c.py", False, False),
    ("/logs", "logs", True, True),
    ("/logs", "app/logs", True, False),
    ("logs", "app/logs", True, True),
    ("tmp/", "tmp", False, False),
    ("tmp/", "x/tmp", True, True),
    ("docs/*.md", "docs/a.md", False, True),
    ("docs/*.md", "x/docs/a.md", False, False),
    ("# a comment", "# a comment", False, False),
])
def test_slugignore_patterns(pattern, path, is_dir, ignored):
    assert SlugIgnore([pattern]).ignores(path, is_dir) is ignored


def test_pack_writes_a_gzip_tar_with_relative_paths(tmp_path):
    (tmp_path / "Procfile").write_text("web: python web.py\n")
    (tmp_path / "web.py").write_text("print(1)\n")
    (tmp_path / ".dynomesh").mkdir()
    (tmp_path / ".dynomesh" / "app").write_text("hello\n")
    packed = pack(tmp_path)
    try:
        assert packed.process_types == {"web": "python web.py"} and packed.files == 2
        with tarfile.open(packed.path, "r:gz") as archive:
            assert sorted(archive.getnames()) == ["Procfile", "web.py"]
    finally:
        packed.path.unlink()


def test_pack_refuses_what_cannot_be_deployed(tmp_path):
    with pytest.raises(NotDeployable, match="has no Procfile"):
        pack(tmp_path)
    (tmp_path / "Procfile").write_text("# nothing\n")
    with pytest.raises(NotDeployable, match="names no process types"):
        pack(tmp_path)
    with pytest.raises(NotDeployable, match="not a directory"):
        pack(tmp_path / "Procfile")


def test_progress_draws_a_bar_on_a_terminal():
    stream = io.StringIO()
    progress = Progress("Uploading slug", 4096, stream=stream, tty=True)
    progress.advance(1024)
    progress.advance(3072)
    progress.finish()
    frames = stream.getvalue().split("\r")
    assert frames[1].startswith("Uploading slug [#######.......................]  25%")
    assert "100% 4.0 KiB/4.0 KiB\n" in frames[2]


def test_progress_prints_plain_lines_off_a_terminal():
    stream = io.StringIO()
    progress = Progress("Uploading slug", 100, stream=stream, tty=False)
    for _ in range(10):
        progress.advance(10)
    lines = stream.getvalue().splitlines()
    assert [line.split(": ")[1].split("%")[0] for line in lines] == ["30", "50", "80", "100"]
    assert lines[-1] == "Uploading slug: 100% (100 B of 100 B)"
