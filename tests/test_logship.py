"""The log shipping buffer both routers and dyno managers use: bound, drops, L10, retries."""

from __future__ import annotations

import asyncio

import pytest

from dynomesh import logline
from dynomesh.logship import ShipBuffer, ShipFigures, ShipSettings, overflow_line, section

LINE = b"2026-11-26T12:00:00.000000+00:00 heroku[router]: at=info status=200"
START = 1_795_000_000.0
SINCE = logline.rfc5424_timestamp(START).encode()
ONE = len(b"@hello\n" + LINE + b"\n")  # the bytes one line of "hello" takes


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lines_of(body: bytes) -> list[tuple[str, bytes]]:
    """(app, line) pairs of a body in the wire shape."""
    app, out = None, []
    for line in body.split(b"\n"):
        if line.startswith(b"@"):
            app = line[1:].decode()
        elif line:
            out.append((app, line))
    return out


@pytest.mark.unit
def test_a_section_names_its_app_then_its_lines():
    assert section("hello", [b"a", b"b"]) == b"@hello\na\nb\n"


@pytest.mark.unit
def test_lines_are_held_up_to_the_bound_then_dropped_and_counted_per_app():
    buffer = ShipBuffer(limit=3 * ONE)
    assert all(buffer.offer("hello", LINE) for _ in range(3))
    assert not buffer.offer("hello", LINE)
    assert not buffer.offer("other", LINE)
    assert buffer.dropped == 2 and len(buffer) == 3


@pytest.mark.unit
def test_the_next_batch_reports_drops_with_herokus_l10_line_first():
    clock = Clock()
    buffer = ShipBuffer(limit=ONE, clock=clock)
    buffer.offer("hello", LINE)
    buffer.offer("hello", LINE)  # does not fit
    clock.now += 1.5
    buffer.offer("hello", LINE)  # nor this one
    clock.now += 3
    sent = lines_of(buffer.take(1_000_000))
    assert sent[0] == ("hello", overflow_line(2, START, clock.now))
    assert sent[0][1].endswith(b" heroku[logs]: Error L10 (output buffer overflow): "
                               b"2 messages dropped since " + SINCE + b".")
    assert sent[1:] == [("hello", LINE)]
    assert buffer.sent() == 1
    assert buffer.take(1_000_000) is None  # reported once


@pytest.mark.unit
def test_a_failed_batch_is_taken_again_with_its_drop_counts_grown_meanwhile():
    clock = Clock()
    buffer = ShipBuffer(limit=ONE, clock=clock)
    buffer.offer("hello", LINE)
    buffer.offer("hello", LINE)
    first = buffer.take(1_000_000)
    assert b"1 messages dropped" in first
    buffer.failed()
    buffer.offer("hello", LINE)  # still full: the failed batch is held
    again = lines_of(buffer.take(1_000_000))
    assert b"2 messages dropped since " + SINCE in again[0][1]
    assert again[1:] == [("hello", LINE)]
    buffer.sent()
    assert buffer.size == 0 and buffer.shipped == 1 and buffer.dropped == 2


@pytest.mark.unit
def test_a_batch_is_the_oldest_sections_up_to_the_size_with_at_least_one():
    buffer = ShipBuffer(limit=1_000_000)
    for index in range(5):
        buffer.add(section("hello", [LINE + b" %d" % index]), 1)
    size = len(section("hello", [LINE + b" 0"]))
    batch = buffer.take(2 * size)
    assert [line[-1:] for _, line in lines_of(batch)] == [b"0", b"1"]
    assert buffer.sent() == 2
    assert len(lines_of(buffer.take(1))) == 1  # one section even when it alone is too large
    buffer.sent()
    assert len(lines_of(buffer.take(1_000_000))) == 2


@pytest.mark.unit
def test_a_refused_batch_is_forgotten_and_counted():
    buffer = ShipBuffer(limit=1_000_000)
    buffer.offer("hello", LINE)
    buffer.take(1_000_000)
    assert buffer.refused() == 1
    assert buffer.take(1_000_000) is None and buffer.refused_lines == 1 and buffer.size == 0


@pytest.mark.unit
def test_one_batch_at_a_time():
    buffer = ShipBuffer(limit=1_000_000)
    buffer.offer("hello", LINE)
    buffer.take(1_000_000)
    with pytest.raises(RuntimeError):
        buffer.take(1_000_000)


@pytest.mark.unit
def test_settings_are_checked_and_figures_merge_across_workers():
    with pytest.raises(ValueError, match="4096"):
        ShipSettings(buffer_bytes=10)
    with pytest.raises(ValueError, match="min interval"):
        ShipSettings(min_interval=-1)
    merged = ShipFigures.merge([ShipFigures(1, 2, 0, 1, 10, 1), ShipFigures(3, 0, 1, 0, 5, 0)])
    assert merged == ShipFigures(4, 2, 1, 1, 15, 0)


async def test_closing_while_a_batch_is_in_flight_ships_it_on_the_way_out():
    """A router stopped under load: its shipper is cancelled mid-POST, and the batch that was
    in flight is posted again by the final drain instead of the shutdown failing."""
    from aiohttp import web

    from dynomesh.logship import LogShipper

    bodies: list[bytes] = []
    first_arrived, finished = asyncio.Event(), asyncio.Event()

    async def take(request: web.Request) -> web.Response:
        body = await request.read()
        if not first_arrived.is_set():
            first_arrived.set()
            await finished.wait()  # the first answer never comes while the shipper waits
            return web.json_response({"lines": 0})
        bodies.append(body)
        return web.json_response({"lines": len(lines_of(body))})

    app = web.Application()
    app.router.add_post("/logs", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    said: list[str] = []
    shipper = LogShipper((f"http://127.0.0.1:{port}",), "token", ShipSettings(min_interval=0),
                         say=said.append)
    try:
        shipper.start()
        shipper.offer("hello", LINE)
        await asyncio.wait_for(first_arrived.wait(), 10)
        await shipper.aclose()
    finally:
        finished.set()
        await runner.cleanup()
    assert [lines_of(b) for b in bodies] == [[("hello", LINE)]]
    assert shipper.buffer.shipped == 1 and not shipper.buffer.pending
    assert said == []
