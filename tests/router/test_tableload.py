"""Large tables built and retired in slices that yield to the loop (router.tableload), and a
big snapshot taken through the real feed path: requests see the old table until the swap."""

from __future__ import annotations

import asyncio
import gc
import json
import random

import pytest

from router import tableload
from router.config import Endpoint, RouterConfig
from router.feed import RouteFeed, RouteFeedConfig, decode_large_line, decode_line
from router.routes import AppRoute
from router.server import Router
from router.table import RouteTable
from tests.router.conftest import table_of

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _unfreeze():
    """Slices freeze what is alive (tableload's docstring); give the test run its GC back."""
    yield
    gc.unfreeze()


@pytest.fixture
def one_step_slices(monkeypatch):
    """Every step its own slice, so each yield to the loop is seen."""
    monkeypatch.setattr(tableload, "SLICE_SECONDS", 0.0)


def entry(i: int, port: int = 1) -> dict:
    return {"name": f"app{i}", "hosts": [f"app{i}.localhost", f"*.app{i}.example.test"],
            "dynos": [{"name": "web.1", "address": f"127.0.0.1:{port}"}]}


def snapshot_line(apps: int, revision: int, port: int = 1) -> bytes:
    return json.dumps({"type": "snapshot", "revision": revision,
                       "apps": [entry(i, port) for i in range(apps)]}).encode()


class Probe:
    """A task that ticks while the loop is free, recording what a request would route to."""

    def __init__(self, look) -> None:
        self.seen: list = []
        self._look = look
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.seen.append(self._look())
            await asyncio.sleep(0)

    async def stop(self) -> list:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task
        return self.seen


async def test_steps_run_in_slices_and_a_probe_runs_between_them(one_step_slices):
    done: list[int] = []
    probe = Probe(lambda: len(done))

    def steps():
        for i in range(50):
            done.append(i)
            yield

    slices = await tableload.run_in_slices(steps())
    seen = await probe.stop()
    assert slices >= 50 and done == list(range(50))
    assert len(set(seen)) > 40  # the probe ran between (nearly) every pair of steps


async def test_a_slice_runs_until_its_budget_is_spent():
    now = [0.0]

    def steps():
        for _ in range(10):
            now[0] += 1.0
            yield

    assert await tableload.run_in_slices(steps(), budget=3.5, clock=lambda: now[0]) == 3


async def test_build_in_slices_refuses_what_build_refuses():
    from router.table import DuplicateHostError

    routes = [AppRoute("one", ("a.localhost",)), AppRoute("two", ("b.localhost", "a.localhost"))]
    with pytest.raises(DuplicateHostError) as caught:
        await tableload.build(routes, 1)
    assert caught.value.apps == ("one", "two") and caught.value.path == "apps[1].hosts[1]"


async def test_retire_empties_a_replaced_table_but_its_entries_stay_usable(one_step_slices):
    table = table_of(*(entry(i) for i in range(600)))
    kept = table.lookup(b"app5.localhost")
    await tableload.retire(table)
    assert len(table) == 0 and table.hosts == 0 and table.lookup(b"app5.localhost") is None
    assert kept.name == "app5" and kept.dynos[0].port == 1


async def test_a_big_snapshot_yields_to_the_loop_and_requests_see_the_old_table_until_the_swap(
        one_step_slices):
    router = Router(RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=None), sinks=[],
                    rng=random.Random(1))
    feed = RouteFeed(router, RouteFeedConfig(("http://control.invalid",), "t"))
    feed.connected("http://control.invalid")
    await feed.line(snapshot_line(3, revision=10, port=1))
    old = router.table
    assert old.revision == 10 and feed.revision == 10
    old_entry = old.lookup(b"app1.localhost")

    feed.connected("http://control.invalid")  # a reconnect: a fresh snapshot
    data = snapshot_line(1200, revision=20, port=2)
    assert len(data) > 64 * 1024  # over OFFLOAD_BYTES: the sliced path
    probe = Probe(lambda: (router.table, router.table.lookup(b"app1.localhost")))
    await feed.line(data)
    seen = await probe.stop()

    new = router.table
    assert new is not old and new.revision == 20 and len(new) == 1200
    assert new.lookup(b"x.app1199.example.test").dynos[0].port == 2
    swap = next(i for i, (table, _) in enumerate(seen) if table is new)
    assert swap > 1000  # the probe ran many times while the line was decoded and built
    assert all(table is old and route is old_entry for table, route in seen[:swap])
    assert all(table is new and route.dynos[0].port == 2 for table, route in seen[swap:])
    assert len(old) == 0  # the replaced table was retired, in slices, after the swap
    assert len(seen) - swap > 1


async def test_the_sliced_decoder_agrees_with_the_plain_one(one_step_slices):
    current = table_of(*(entry(i) for i in range(5)), revision=4)
    lines = [
        snapshot_line(700, revision=5),
        json.dumps({"revision": 6, "apps": [entry(i, 3) for i in range(700)], "removed": ["app1"],
                    "type": "delta"}).encode(),
        json.dumps({"type": "heartbeat", "revision": 9, "pad": [0] * 40000}).encode(),
    ]
    for data in lines:
        assert len(data) > 64 * 1024
        plain = decode_line(data, current, 4, fresh=False, need_snapshot=False)
        sliced = await decode_large_line(data, current, 4, fresh=False, need_snapshot=False)
        assert (sliced.kind, sliced.revision, sliced.changed) == \
            (plain.kind, plain.revision, plain.changed)
        assert sliced.routes == plain.routes and sliced.removed == plain.removed
        if plain.table is not None:
            assert dict(sliced.table.apps) == dict(plain.table.apps)
            assert sliced.table.by_host == plain.table.by_host


@pytest.mark.parametrize("message, words", [
    ({"type": "snapshot", "revision": 5, "apps": [entry(0), {"name": "x", "hosts": ["bad host"]}]
      + [entry(i) for i in range(1, 700)]}, r"snapshot at revision 5 refused: apps\[1\].hosts\[0\]"),
    ({"apps": [entry(i) for i in range(700)] + [entry(0)], "type": "snapshot", "revision": 5},
     "listed twice"),
    ({"type": "snapshot", "apps": [entry(i) for i in range(700)]}, "no valid revision"),
])
async def test_the_sliced_decoder_refuses_a_line_whole(message, words):
    from dynomesh.feedclient import FeedResync

    with pytest.raises(FeedResync, match=words):
        await decode_large_line(json.dumps(message).encode(), None, None, fresh=True,
                                need_snapshot=True)


async def test_a_repeated_large_line_is_ignored_even_with_a_bad_entry():
    message = {"type": "snapshot", "revision": 3,
               "apps": [{"name": "x", "hosts": ["bad host"]}] + [entry(i) for i in range(700)]}
    assert await decode_large_line(json.dumps(message).encode(), RouteTable.empty(), 5,
                                   fresh=False, need_snapshot=False) is None


async def test_a_step_that_grows_the_host_dict_starts_a_slice_of_its_own():
    from router.table import TableBuilder

    routes = [AppRoute(f"a{i}", (f"a{i}.localhost", f"b{i}.localhost")) for i in range(40)]
    builder = TableBuilder(1)
    marks = list(tableload.build_steps(builder, routes))
    assert builder.exact_hosts == 80 and marks.count(False) == 40
    # before the entries that take the dict past 5, 10, 21, 42 (2/3 of 8, 16, 32, 64) hosts
    starts = [sum(not m for m in marks[:i]) for i, mark in enumerate(marks) if mark]
    assert starts == [2, 5, 10, 21]  # entries added before each: 4, 10, 20, 42 hosts
    now = [0.0]
    assert await tableload.run_in_slices(iter(marks), budget=100.0, clock=lambda: now[0]) == 5


async def test_after_a_snapshot_only_changed_or_removed_apps_backends_are_rebound(one_step_slices):
    router = Router(RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=None), sinks=[],
                    rng=random.Random(1))
    feed = RouteFeed(router, RouteFeedConfig(("http://control.invalid",), "t"))
    feed.connected("http://control.invalid")
    await feed.line(snapshot_line(800, revision=1, port=1))
    for name in ("app1", "app2", "app799"):
        router.backends.get(router.table.app(name))  # these apps have served requests
    kept = router.backends.bound["app1"]
    apps = [entry(i, port=2 if i == 2 else 1) for i in range(799)]  # app2 changed, app799 gone
    feed.connected("http://control.invalid")
    await feed.line(json.dumps({"type": "snapshot", "revision": 2, "apps": apps}).encode())
    bound = router.backends.bound
    assert bound["app1"] is kept and kept.route is router.table.app("app1")
    assert bound["app2"].route is router.table.app("app2")
    assert bound["app2"].pools[0].dyno.port == 2
    assert "app799" not in bound and feed.revision == 2


async def test_a_routes_file_reloads_in_slices_with_the_same_table_as_a_plain_load(
        tmp_path, one_step_slices):
    from router.source import RoutesFile

    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"revision": 3, "apps": [entry(i) for i in range(300)]}))
    plain = RoutesFile(path).load()
    done: list[int] = []
    probe = Probe(lambda: len(done))
    sliced = await RoutesFile(path).load_in_slices(previous=plain)
    done.append(1)
    seen = await probe.stop()
    assert seen.count(0) > 300  # the probe ran while the file was taken in
    assert sliced is not plain and sliced.revision == 3 and sliced.by_host == plain.by_host
    assert sliced.app("app7") is plain.app("app7")  # unchanged entries kept


async def test_a_bad_routes_file_reload_says_where(tmp_path):
    from router.source import RoutesFile

    path = tmp_path / "routes.json"
    path.write_text('{"apps": [\n  {"name": "a",}\n]}')
    with pytest.raises(Exception, match=r"not valid JSON: .* line 2 column"):
        await RoutesFile(path).load_in_slices()
    path.write_text(json.dumps({"apps": [entry(1), {"name": "b", "hosts": ["app1.localhost"]}]}))
    with pytest.raises(Exception, match=r"apps\[1\].hosts\[0\]: host 'app1.localhost' is claimed"):
        await RoutesFile(path).load_in_slices()


def test_overlapping_pauses_of_full_collections_restore_the_threshold_once_all_end():
    before = gc.get_threshold()
    first, second = tableload.full_collections_paused(), tableload.full_collections_paused()
    first.__enter__()
    second.__enter__()
    assert gc.get_threshold()[2] == 1 << 30
    first.__exit__(None, None, None)  # the first ends before the second (a cancelled reload)
    assert gc.get_threshold()[2] == 1 << 30
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
