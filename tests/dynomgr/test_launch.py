"""How a dyno's process is launched: the exec chain, and the pre-exec fallback (real processes)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from dynomgr.markers import DynoMarker
from dynomgr.process import LaunchSpec, Spawner, exit_status, launch_argv
from dynomgr.users import RunAs

ME = RunAs(os.geteuid(), os.getegid(), "me")
NOBODY = RunAs(65534, 65534, "nobody")


def spec(run_as: RunAs, cgroup: Path | None = None, command: str = "echo hi", cwd: Path = Path("/"),
         output: Path = Path("/nonexistent/web.1")) -> LaunchSpec:
    outputs = (output.with_suffix(".out"), output.with_suffix(".err"))
    return LaunchSpec(command, cwd, {"PATH": "/usr/bin:/bin"}, run_as, DynoMarker("agent.abc", cgroup), outputs)


def test_without_switching_the_command_runs_in_sh_directly():
    argv, preexec = launch_argv(spec(ME), "/usr/bin/setpriv")
    assert argv == ["/bin/sh", "-c", "echo hi"] and preexec is None


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_as_root_the_exec_chain_joins_the_cgroup_then_drops_to_the_dyno_user():
    argv, preexec = launch_argv(spec(NOBODY, Path("/sys/fs/cgroup/x/abc")), "/usr/bin/setpriv")
    assert preexec is None
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2] == 'echo $$ > "$1" || exit 126; exec "$2" --reuid="$3" --regid="$4" --clear-groups -- /bin/sh -c "$5"'
    assert argv[4:] == ["/sys/fs/cgroup/x/abc/cgroup.procs", "/usr/bin/setpriv", "65534", "65534", "echo hi"]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_without_setpriv_a_pre_exec_function_is_used():
    argv, preexec = launch_argv(spec(NOBODY), None)
    assert argv == ["/bin/sh", "-c", "echo hi"] and callable(preexec)


def test_exit_statuses_follow_the_shell_convention():
    assert exit_status(0) == 0 and exit_status(3) == 3
    assert exit_status(-15) == 143 and exit_status(-9) == 137


async def run_to_exit(spawner: Spawner, launch: LaunchSpec) -> tuple[int, list[str]]:
    lines: list[str] = []
    process = await spawner.spawn(launch, lines.append, 10_000)
    returncode = await asyncio.wait_for(process.exited, 10)
    await process.output_drained(5)
    process.close()
    return returncode, lines


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
@pytest.mark.parametrize("setpriv", [shutil.which("setpriv"), None], ids=["exec-chain", "pre-exec"])
async def test_both_launch_paths_run_the_command_as_the_dyno_user_in_a_new_session(setpriv, tmp_path):
    spawner = Spawner(setpriv)
    try:
        code, lines = await run_to_exit(spawner, spec(NOBODY, command='echo "uid=$(id -u) sid=$(ps -o sid= -p $$ | tr -d " ") pid=$$"; exit 7', output=tmp_path / "out"))
    finally:
        spawner.close()
    assert code == 7
    uid, sid, pid = (part.split("=")[1] for part in lines[0].split())
    assert uid == "65534" and sid == pid  # its own session, led by the first process


async def test_output_is_read_from_stdout_and_stderr_and_the_exit_status_is_reported(tmp_path):
    spawner = Spawner(None)
    try:
        code, lines = await run_to_exit(spawner, spec(ME, command="echo out; echo err >&2; printf 'no newline'; kill -TERM $$", output=tmp_path / "out"))
    finally:
        spawner.close()
    assert exit_status(code) == 143
    assert sorted(lines) == ["err", "no newline", "out"]
