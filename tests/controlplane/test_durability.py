"""SIGKILL the control plane while it takes writes: every acknowledged change survives, and no
change is half there (on SQLite and on PostgreSQL).

Writers send config changes (two keys that must land together, and a release), app creations
and slug deploys concurrently; the test kills the process with SIGKILL mid-stream, restarts it,
writes and kills again, then checks the acknowledged writes and the store's invariants.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import aiohttp
import pytest

from controlplane.store import Feed, Store, open_database
from tests.controlplane.conftest import HELLO_SLUG, checksum, slug_bytes
from tests.controlplane.harness import ControlPlane

WRITERS = 4
ROUNDS = 2


class Ledger:
    """What the control plane acknowledged (a 2xx response arrived)."""

    def __init__(self) -> None:
        self.config: list[tuple[int, int]] = []
        self.apps: list[str] = []
        self.releases: list[str] = []
        self.count = 0
        self.target = 0  # kill once this many requests were answered


async def writer(url: str, token: str, number: int, round_: int, ledger: Ledger,
                 enough: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url, headers=headers) as session:
        for i in range(10_000):  # bounded; the kill ends it long before
            step = f"{round_}{i:04d}"
            try:
                if i % 3 == 0:
                    async with session.patch("/apps/durable/config-vars", json={
                            f"K{number}_{step}": step, f"C{number}_{step}": step}) as response:
                        if response.status == 200:
                            ledger.config.append((number, int(step)))
                elif i % 3 == 1:
                    name = f"app-{number}-{step}"
                    async with session.post("/apps", json={"name": name}) as response:
                        if response.status == 201:
                            ledger.apps.append(name)
                else:
                    data = slug_bytes({**HELLO_SLUG, "stamp.txt": f"{number} {step}"})
                    async with session.post("/apps/durable/slugs", data=data, headers={
                            "X-Slug-Checksum": checksum(data)}) as response:
                        if response.status != 201:
                            continue
                        slug = await response.json()
                    async with session.post("/apps/durable/releases",
                                            json={"slug": slug["id"]}) as response:
                        if response.status == 201:
                            ledger.releases.append((await response.json())["id"])
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return  # the control plane died under us: expected
            ledger.count += 1
            if ledger.count >= ledger.target:
                enough.set()


async def write_until_killed(plane: ControlPlane, round_: int, ledger: Ledger,
                             rng: random.Random) -> None:
    ledger.target = ledger.count + rng.randint(15, 60)
    enough = asyncio.Event()
    tasks = [asyncio.create_task(writer(plane.url, plane.token, n, round_, ledger, enough))
             for n in range(WRITERS)]
    await asyncio.wait_for(enough.wait(), timeout=90)
    plane.kill()  # SIGKILL while the writers still have requests in flight
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


async def check_store(database_url: str, home, ledger: Ledger) -> None:
    store = await Store.open(open_database(database_url, home=home))
    try:
        config = await store.releases.config("durable")
        for number, step in ledger.config:
            assert config[f"K{number}_{step}"] == config[f"C{number}_{step}"] == str(step)
        for key in config:  # a config change is both of its keys or neither
            assert config["C" + key[1:] if key[0] == "K" else "K" + key[1:]] == config[key]
        for name in ledger.apps:
            await store.apps.get(name)
        releases = list(reversed(await store.releases.list("durable", limit=10_000)))
        assert [r.version for r in releases] == list(range(1, len(releases) + 1))
        assert set(ledger.releases) <= {r.id for r in releases}
        assert releases[-1].config == config  # the newest release has the config in force
        for before, after in zip(releases, releases[1:]):
            added = set(after.config.items()) - set(before.config.items())
            assert len(added) in (0, 2) and set(before.config.items()) <= set(after.config.items())
        for release in releases:
            if release.slug_id:
                slug = await store.releases.get_slug("durable", release.slug_id)
                data = (home / "slugs" / f"{slug.id}.tar.gz").read_bytes()
                assert "sha256:" + hashlib.sha256(data).hexdigest() == slug.checksum
        revision = await store.revision()
        revisions = set()
        for feed in Feed:  # every revision changed something some feed serves
            revisions |= {c.revision for c in (await store.changes_since(feed, 0)).changes}
        assert sorted(revisions) == list(range(1, revision + 1))
    finally:
        await store.close()


@pytest.mark.timeout(300)
async def test_sigkill_during_writes_loses_no_acknowledged_change(tmp_path, database_url):
    home = tmp_path / "home"
    plane = ControlPlane(home, database_url=database_url)
    rng = random.Random()
    ledger = Ledger()
    await asyncio.to_thread(plane.start)
    async with aiohttp.ClientSession(plane.url, headers={
            "Authorization": f"Bearer {plane.token}"}) as session:
        async with session.post("/apps", json={"name": "durable"}) as response:
            assert response.status == 201
    for round_ in range(1, ROUNDS + 1):
        await write_until_killed(plane, round_, ledger, rng)
        await asyncio.to_thread(plane.start)
    assert plane.stop() == 0, plane.log()
    assert len(ledger.config) >= 2 and ledger.apps and ledger.releases
    await check_store(database_url, home, ledger)
