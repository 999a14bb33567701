"""Assignment feed lines -> the full desired set, without sockets (FeedAssignmentSource.line)."""

from __future__ import annotations

import asyncio
import json

import pytest

from dynomgr.assignments import parse_assignments
from dynomgr.feed import FeedAssignmentSource
from dynomesh.feedclient import FeedResync

pytestmark = pytest.mark.unit

SCHEMES = frozenset({"file", "http", "https"})
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


class QuietReporter:
    resyncs = 0

    def resync(self) -> None:
        self.resyncs += 1


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)

    error = info


def entry(dyno_id: str, name: str = "web.1", release: int = 1, **fields) -> dict:
    return {"id": dyno_id, "app": "hello", "name": name, "type": name.split(".")[0],
            "release": release, "slug": {"url": "http://cp/slugs/s/download", "sha256": SHA},
            **fields}


def line(**message) -> bytes:
    return json.dumps(message).encode()


@pytest.fixture
def source():
    reporter = QuietReporter()
    feed = FeedAssignmentSource(("http://cp",), "t", SCHEMES, reporter, Log())
    feed.connected("http://cp")
    return feed


async def desired(source) -> dict:
    update = await asyncio.wait_for(source.next(), 1)
    return {key: (a.name, a.release) for key, a in update.dynos.items()}


async def test_a_snapshot_then_deltas_keyed_by_id(source):
    await source.line(line(type="snapshot", revision=10, dynos=[entry("d-1"), entry("d-2", "worker.1")]))
    assert await desired(source) == {"d-1": ("web.1", 1), "d-2": ("worker.1", 1)}
    await source.line(line(type="delta", revision=11, dynos=[entry("d-3", release=2)], removed=["d-2"]))
    await source.line(line(type="delta", revision=12, dynos=[entry("d-1", restart=1)], removed=[]))
    # Two deltas while the agent was busy: handed over as one set; web.1 twice, by id.
    update = await asyncio.wait_for(source.next(), 1)
    assert {k: (a.name, a.release, a.restart) for k, a in update.dynos.items()} == {
        "d-1": ("web.1", 1, 1), "d-3": ("web.1", 2, 0)}
    assert source.revision == 12


async def test_repeats_are_ignored_and_heartbeats_only_move_the_revision(source):
    await source.line(line(type="snapshot", revision=10, dynos=[entry("d-1")]))
    await desired(source)
    await source.line(line(type="delta", revision=10, dynos=[entry("d-9")], removed=[]))
    await source.line(line(type="heartbeat", revision=15))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(source.next(), 0.05)
    assert source.revision == 15


async def test_a_bad_entry_keeps_the_dyno_it_names_and_is_reported(source):
    await source.line(line(type="snapshot", revision=10, dynos=[entry("d-1")]))
    await desired(source)
    await source.line(line(type="delta", revision=11, dynos=[entry("d-1", release="2")], removed=[]))
    update = await asyncio.wait_for(source.next(), 1)
    assert update.dynos["d-1"].release == 1
    (error,) = update.errors
    assert str(error) == 'dynos[0] (hello web.1): release must be a positive integer, got \'2\''


async def test_a_broken_line_asks_for_a_snapshot(source):
    await source.line(line(type="snapshot", revision=10, dynos=[]))
    await desired(source)
    with pytest.raises(FeedResync, match="not a list"):
        await source.line(line(type="delta", revision=11, dynos={}, removed=[]))
    assert source.since() is None and source.rejected == 1
    source.connected("http://cp")
    with pytest.raises(FeedResync, match="snapshot was due"):
        await source.line(line(type="delta", revision=12, dynos=[], removed=[]))


def test_file_entries_without_ids_keep_the_app_and_name_key():
    text = json.dumps({"dynos": [{k: v for k, v in entry("x").items() if k != "id"}]})
    assert list(parse_assignments(text, SCHEMES).dynos) == [("hello", "web.1")]
