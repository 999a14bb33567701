import subprocess

from tests.conftest import dynomesh_argv, dynomesh_env


def test_help_lists_the_process_commands():
    result = subprocess.run(dynomesh_argv("--help"), env=dynomesh_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0
    for command in ("up", "control", "router", "dynomgr"):
        assert f"\n  {command} " in result.stdout


def test_no_arguments_prints_usage_and_fails():
    result = subprocess.run(dynomesh_argv(), env=dynomesh_env(), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "usage: dynomesh" in result.stdout


def test_every_user_command_the_usage_names_exists():
    usage = subprocess.run(dynomesh_argv("--help"), env=dynomesh_env(), capture_output=True,
                           text=True, timeout=30).stdout
    line = next(line for line in usage.splitlines() if line.strip().startswith("apps,"))
    named = [name.strip() for name in line.split(",") if name.strip() not in ("", "...")]
    assert len(named) >= 5
    for name in named:
        result = subprocess.run(dynomesh_argv("help", name), env=dynomesh_env(),
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"`dynomesh {name}` is in the usage but: {result.stderr}"


def test_help_lists_every_command_and_explains_the_process_commands():
    listing = subprocess.run(dynomesh_argv("help"), env=dynomesh_env(), capture_output=True,
                             text=True, timeout=30)
    assert listing.returncode == 0
    for command in ("up", "control", "router", "dynomgr", "deploy", "run", "ps:scale"):
        assert f"\n  {command} " in listing.stdout, command
    for command, flag in (("up", "--api"), ("control", "--listen"), ("router", "--listen"),
                          ("dynomgr", "--control")):
        result = subprocess.run(dynomesh_argv("help", command), env=dynomesh_env(),
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert f"usage: dynomesh {command}" in result.stdout and flag in result.stdout
