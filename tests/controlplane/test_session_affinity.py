"""Session affinity end to end on real parts: a control node (SQLite) on loopback, the real
`dynomesh` CLI against it, two routers following its route feed, and dynos that are scripted
loopback servers which a dyno manager (the test's reports) says are up.

One journey, so the platform boots once: the feature turned on with the CLI; a cookie set by
router A is honoured by router B; a forged cookie is ignored; a key rotation keeps old cookies
working while new ones are signed with the new key; a dyno that leaves, or comes back at another
address, gets its clients pinned elsewhere with a new cookie; the feature off sets no cookie.
Secrets never reach the CLI's or the API's output.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

import pytest

from controlplane.store.models import Role
from router.accesslog import MemorySink
from router.config import Endpoint, RouterConfig
from router.feed import RouteFeed, RouteFeedConfig
from router.server import Router
from tests.controlplane.followers import DynoManager, Follower
from tests.router.conftest import wait_until
from tests.router.test_feed import FAST
from tests.router.wire import Dyno, RawClient, response_bytes

pytestmark = pytest.mark.functional

COOKIE = b"dynomesh-session-affinity"


async def named(dyno: Dyno, reader, writer) -> None:
    """A dyno that answers with its name (and a cookie of the app's own)."""
    while True:
        await dyno.next_request(reader)
        writer.write(response_bytes(200, dyno.name.encode(),
                                    headers=[("Set-Cookie", "app=1; Path=/")]))
        await writer.drain()


async def cli(api, *args: str) -> str:
    """The real `dynomesh` command against the in-process node (a process of its own)."""
    env = {**os.environ, "DYNOMESH_API": api.url, "DYNOMESH_TOKEN": api.tokens[Role.USER]}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dynomesh", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (args, out, err)
    return out.decode() + err.decode()


async def get(router: Router, cookie: bytes | None = None) -> tuple[str, bytes | None]:
    """-> (the dyno that answered, the affinity cookie set, if any)."""
    client = await RawClient.connect(router.port)
    try:
        headers = [("Cookie", f"{COOKIE.decode()}={cookie.decode()}")] if cookie else []
        answer = await client.request(host="hello.localhost", headers=headers)
    finally:
        await client.close()
    assert answer.status == 200, answer
    assert b"app=1; Path=/" in answer.all("Set-Cookie")  # the app's own cookie is relayed
    pinned = [v for v in answer.all("Set-Cookie") if v.startswith(COOKIE + b"=")]
    return answer.body.decode(), pinned[0].split(b";")[0].partition(b"=")[2] if pinned else None


def key_id(cookie: bytes) -> str:
    return cookie.split(b".")[0].decode()


@pytest.fixture
async def routers(api):
    """Two routers following the node's route feed."""
    made = []
    for _ in range(2):
        router = Router(RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=None), sinks=[MemorySink()],
                        rng=random.Random())
        router.feed = RouteFeed(router, RouteFeedConfig((api.url,), api.tokens[Role.ROUTER],
                                                        FAST))
        await router.start()
        router.feed.start()
        made.append(router)
    yield made
    for router in made:
        await router.feed.stop()
        await router.stop()


def entry(router: Router):
    return router.table.app("hello") if router.table is not None else None


async def test_affinity_across_routers_rotation_restarts_and_forgeries(api, routers):
    a, b = routers
    vm = DynoManager(api.url, "vm-1", api.tokens[Role.DYNOMGR])
    await vm.register()
    assert (await api.call("POST", "/apps", json={"name": "hello"}))[0] == 201
    await api.deploy("hello")
    assert (await api.call("PATCH", "/apps/hello/formation/web", json={"quantity": 2}))[0] == 200
    dynos = {name: await Dyno(name, named).start() for name in ("web.1", "web.2")}
    async with await Follower.open(api.url, "/feeds/assignments",
                                   api.tokens[Role.DYNOMGR]) as assigned:
        await assigned.until(lambda f: len(f.entries) == 2)
        entries = {e["name"]: e for e in assigned.entries.values()}
    for name, dyno in dynos.items():
        await vm.report(vm.observed(entries[name], "up", address=dyno.address))

    assert "Enabled http-session-affinity for hello" in await cli(
        api, "features:enable", "http-session-affinity", "--app", "hello")
    for router in routers:
        await wait_until(lambda: entry(router) is not None and entry(router).session_affinity
                         and len(entry(router).dynos) == 2 and router.table.affinity_keys, 20)

    # Router A pins the client; router B honours A's cookie (they share the key).
    served, cookie = await get(a)
    assert cookie is not None and cookie.endswith(b"." + served.encode())
    for router in (b, a, b, b):
        assert await get(router, cookie) == (served, None)  # pinned: nothing new to set
    other = "web.2" if served == "web.1" else "web.1"

    # A forged cookie (a made-up MAC) is ignored: balanced, and a genuine cookie set.
    forged = cookie.split(b".")[0] + b"." + b"A" * 43 + b"." + other.encode()
    answered, fresh = await get(b, forged)
    assert fresh is not None and fresh != forged and fresh.endswith(b"." + answered.encode())

    # Rotation: the routers learn the new key through the feed; the old cookie still pins,
    # and its response carries the same pin signed with the new key.
    before = key_id(cookie)
    rotated = await cli(api, "routers:keys:rotate", "--json")
    assert "secret" not in rotated
    new = json.loads(rotated)["signing"]["id"]
    assert new != before and [k["id"] for k in json.loads(rotated)["keys"]] == [new, before]
    for router in routers:
        await wait_until(lambda: router.table.affinity_keys[0].id == new
                         and len(router.table.affinity_keys) == 2, 20)
    served_again, resigned = await get(a, cookie)
    assert served_again == served and key_id(resigned) == new
    assert resigned.endswith(b"." + served.encode())
    assert await get(b, resigned) == (served, None)
    status, body, _ = await api.call("GET", "/routers/keys")  # (routers:keys shows this)
    assert status == 200 and [k["id"] for k in body] == [new, before]
    assert all(set(k) == {"id", "created_at", "use"} for k in body)  # never a secret

    # The pinned dyno restarts: it leaves the routes, so its clients go to the other dyno with
    # a new cookie; when it is back at another address, the old cookie still does not pin it
    # (another run of the dyno).
    await vm.report(vm.observed(entries[served], "crashed"))
    for router in routers:
        await wait_until(lambda: len(entry(router).dynos) == 1, 20)
    moved, repinned = await get(b, resigned)
    assert moved == other and repinned.endswith(b"." + other.encode())
    await dynos[served].stop()
    dynos[served] = await Dyno(served, named).start()  # a new port
    await vm.report(vm.observed(entries[served], "up", address=dynos[served].address))
    for router in routers:
        await wait_until(lambda: len(entry(router).dynos) == 2, 20)
    answered, again = await get(a, resigned)
    assert again is not None and again != resigned
    assert again.endswith(b"." + answered.encode())
    assert await get(b, repinned) == (other, None)  # pins to a dyno that stayed hold

    # The feature off: no affinity cookie, with or without one sent.
    status, _, _ = await api.call("PATCH", "/apps/hello/features/http-session-affinity",
                                  json={"enabled": False})  # (features:disable does this)
    assert status == 200
    for router in routers:
        await wait_until(lambda: not entry(router).session_affinity, 20)
    for cookie_sent in (None, repinned):
        assert (await get(a, cookie_sent))[1] is None

    for dyno in dynos.values():
        await dyno.stop()
    await vm.close()


async def test_every_node_rotates_the_key_on_its_period_and_routers_hear_of_it(api_factory):
    api = await api_factory(affinity_key_rotation=1.0)  # a new key every second
    async with await Follower.open(api.url, "/feeds/routes", api.tokens[Role.ROUTER]) as feed:
        first = (await feed.next())["affinity_keys"]
        await feed.until(lambda f: any(
            m.get("affinity_keys") and m["affinity_keys"][0]["id"] != first[0]["id"]
            for m in f.messages[1:]))
        rotated = [m for m in feed.messages[1:] if m.get("affinity_keys")][0]["affinity_keys"]
    assert len(rotated) == 2 and rotated[1] == first[0]  # the previous key still verifies
