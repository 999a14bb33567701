"""NonBlockingWriter on real pipes and files, on both event loops the components use."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import uvloop

from dynomesh.writer import NonBlockingWriter
from tests.conftest import read_all

RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


async def opened_pipe(limit: int, **kwargs) -> tuple[int, NonBlockingWriter]:
    r, w = os.pipe()
    writer = NonBlockingWriter(w, limit, drop_notice=lambda n: f"dropped {n}", **kwargs)
    await writer.start()
    os.close(w)  # the writer has its own open file description of the pipe
    return r, writer


@pytest.fixture(params=sorted(RUNNERS))
def run(request):
    return RUNNERS[request.param]


def test_closing_flushes_everything_buffered_to_a_reader(run):
    lines = [f"line {i} " + "x" * 100 for i in range(10_000)]  # far beyond the pipe's 64 KiB

    async def scenario():
        r, writer = await opened_pipe(4 * 1024 * 1024)
        for line in lines:
            writer.write_line(line)
        reader = asyncio.ensure_future(asyncio.to_thread(read_all, r))
        await writer.aclose(timeout=30)
        return await reader, writer.dropped

    data, dropped = run(scenario())
    assert dropped == 0
    assert data.decode().splitlines() == lines


def test_a_slow_reader_costs_lines_that_are_counted_and_then_announced(run):
    line = "y" * 1023

    async def scenario():
        drops = []
        r, writer = await opened_pipe(16 * 1024, on_drop=drops.append)
        for _ in range(200):  # ~200 KiB into 64 KiB of pipe and 16 KiB of buffer
            writer.write_line(line)
        reader = asyncio.ensure_future(asyncio.to_thread(read_all, r))
        await writer.aclose(timeout=30)
        return await reader, writer.dropped, drops

    data, dropped, drops = run(scenario())
    written = data.decode().splitlines()
    assert 0 < dropped < 200 and drops == [1] * dropped
    assert written[-1] == f"dropped {dropped}"  # said once the reader caught up
    assert written[:-1] == [line] * (200 - dropped)


def test_closing_does_not_wait_for_a_reader_that_is_gone(run):
    async def scenario():
        r, writer = await opened_pipe(4 * 1024 * 1024)
        os.close(r)
        for _ in range(1000):
            writer.write_line("z" * 1000)
        started = time.monotonic()
        await writer.aclose(timeout=30)
        return time.monotonic() - started

    assert run(scenario()) < 5


def test_closing_gives_up_on_a_stalled_reader_at_the_timeout(run):
    async def scenario():
        r, writer = await opened_pipe(4 * 1024 * 1024)
        for _ in range(1000):  # 1 MB: the pipe takes 64 KiB, the rest waits for a reader
            writer.write_line("w" * 1000)
        started = time.monotonic()
        await writer.aclose(timeout=0.2)
        elapsed = time.monotonic() - started
        os.close(r)
        return elapsed

    # The loop's timers have millisecond resolution and may fire a hair early, so "waited for
    # the timeout" is checked as "waited most of it", not to the microsecond.
    assert 0.15 <= run(scenario()) < 5


def test_a_regular_file_is_written_directly(run, tmp_path):
    path = tmp_path / "out.log"

    async def scenario():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            writer = NonBlockingWriter(fd, 10, drop_notice=str)
            await writer.start()
            for i in range(100):  # far beyond the limit: a file never makes us drop
                writer.write_line(f"line {i}")
            await writer.aclose()
            return writer.dropped
        finally:
            os.close(fd)

    assert run(scenario()) == 0
    assert path.read_text().splitlines() == [f"line {i}" for i in range(100)]
