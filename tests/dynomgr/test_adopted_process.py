"""Watching a dyno process and its output (real processes): a pid that now names another
process is never signalled, and stdout and stderr stay two streams of lines."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

from dynomgr import outputfifo, procscan
from dynomgr.process import AdoptedProcess, Spawner
from tests.dynomgr.test_launch import ME, run_to_exit, spec


def _stranger() -> subprocess.Popen:
    """A process in a session of its own, as a dyno's first process is, but not a dyno."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


async def test_a_reused_pid_is_watched_as_ended_and_never_signalled():
    stranger = _stranger()
    try:
        ticks = procscan.read_stat(stranger.pid).start_ticks
        # The record names this pid with another start time: the dyno it named is gone.
        process = AdoptedProcess.watch(stranger.pid, ticks - 1, lambda line: None)
        assert process.exited.done() and await process.exited is None
        assert not process.signal_group(signal.SIGKILL)
        assert stranger.poll() is None, "the stranger holding the reused pid was signalled"
    finally:
        stranger.kill()
        stranger.wait()


async def test_an_adopted_process_whose_pid_is_reused_after_it_ended_is_not_signalled():
    stranger = _stranger()
    try:
        ticks = procscan.read_stat(stranger.pid).start_ticks
        process = AdoptedProcess.watch(stranger.pid, ticks, lambda line: None)
        assert not process.exited.done()
        # What signal_group() meets when the adopted process ended and its pid went to
        # another process: the same pid, a different start time.
        process.start_ticks = ticks + 1
        assert not process.signal_group(signal.SIGKILL)
        assert stranger.poll() is None
        process.start_ticks = ticks  # still ours: its whole group is signalled
        assert process.signal_group(signal.SIGKILL)
        assert await asyncio.wait_for(process.exited, 10) is None
        assert stranger.wait(10) == -signal.SIGKILL
        process.close()
    finally:
        stranger.kill()
        stranger.wait()


async def test_an_unfinished_stdout_line_and_a_stderr_line_are_never_glued(tmp_path):
    # Before the output FIFOs each stream had its own pipe and splitter; it must stay so.
    command = "printf 'out starts, '; echo 'an error' >&2; printf 'err starts, ' >&2; echo 'out ends'; echo 'err ends' >&2"
    spawner = Spawner(None)
    try:
        code, lines = await run_to_exit(spawner, spec(ME, command=command, output=tmp_path / "web.1"))
    finally:
        spawner.close()
    assert code == 0
    assert sorted(lines) == ["an error", "err starts, err ends", "out starts, out ends"]


def test_a_dyno_can_write_more_than_64_kib_while_nobody_reads(tmp_path):
    # The gap between two agents: nobody reads the FIFO; Linux's default buffer (64 KiB)
    # would make the dyno's next write block.
    read_fd, dyno_fd = outputfifo.create(tmp_path / "web.1.out")
    try:
        os.set_blocking(dyno_fd, False)  # a write that would block fails instead
        size = 256 * 1024
        assert os.write(dyno_fd, b"x" * size) == size
    finally:
        os.close(read_fd)
        os.close(dyno_fd)
