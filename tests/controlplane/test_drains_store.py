"""`store.drains` on both backends: drains of an app, and the delivery leases that let one
control node at a time deliver each drain."""

from __future__ import annotations

import pytest

from controlplane.store import errors
from controlplane.store.drains import MAX_PER_APP, HeldLease
from controlplane.store.logs import NewLine
from controlplane.store.models import DrainStats

URL = "syslog+tls://logs.example.com:6514"
NOW = 1_800_000_000.0


async def app_with_lines(store, count: int = 0):
    app = await store.apps.create("hello")
    if count:
        await store.logs.append({"hello": [NewLine("2026-11-26T12:00:00.000000+00:00", "app",
                                                   "web.1", f"line {n}")
                                           for n in range(count)]})
    return app


async def test_a_drain_starts_after_the_apps_newest_line_and_is_listed_and_removed(store):
    app = await app_with_lines(store, count=3)
    drain = await store.drains.add("hello", URL)
    assert (drain.app, drain.app_id, drain.url, drain.cursor, drain.owner) == \
        ("hello", app.id, URL, 3, None)
    assert drain.token.startswith("d.") and len(drain.token) == 38
    other = await store.drains.add("hello", "https://logs.example.com/in")
    _, listed = await store.drains.list("hello")
    assert {d.id for d in listed} == {drain.id, other.id}
    assert (await store.drains.remove("hello", drain.token)).id == drain.id
    assert (await store.drains.remove("hello", "https://logs.example.com/in")).id == other.id
    with pytest.raises(errors.NotFound, match="`dynomesh drains --app hello` lists them"):
        await store.drains.remove("hello", drain.id)


async def test_the_same_url_twice_and_too_many_drains_are_refused(store):
    await app_with_lines(store)
    await store.drains.add("hello", URL)
    with pytest.raises(errors.Conflict, match="already drains to that URL"):
        await store.drains.add("hello", URL)
    for n in range(MAX_PER_APP - 1):
        await store.drains.add("hello", f"syslog://logs.example.com:{1000 + n}")
    with pytest.raises(errors.Invalid, match="remove one with `dynomesh drains:remove`"):
        await store.drains.add("hello", "syslog://logs.example.com:999")
    with pytest.raises(errors.NotFound):
        await store.drains.add("nope", URL)


async def test_one_node_holds_a_drain_until_its_lease_runs_out(store):
    await app_with_lines(store)
    drain = await store.drains.add("hello", URL)
    (held,) = await store.drains.claim("node-a", NOW, 10.0, limit=10)
    assert (held.id, held.owner, held.lease_until, held.lease_epoch) == \
        (drain.id, "node-a", NOW + 10.0, 1)
    assert await store.drains.claim("node-b", NOW + 9.0, 10.0, limit=10) == []
    lease = HeldLease(drain.id, 1, 42, DrainStats(40, 2, 3, "timed out", NOW + 1))
    assert await store.drains.renew("node-a", NOW + 5.0, 10.0, [lease]) == {drain.id}
    assert await store.drains.claim("node-b", NOW + 14.0, 10.0, limit=10) == []
    # Node a stopped renewing: node b takes over, resuming where node a said it got.
    (taken,) = await store.drains.claim("node-b", NOW + 15.5, 10.0, limit=10)
    assert (taken.owner, taken.lease_epoch, taken.cursor, taken.stats) == \
        ("node-b", 2, 42, DrainStats(40, 2, 3, "timed out", NOW + 1))
    # Node a comes back: its renewal names an old epoch and keeps nothing.
    assert await store.drains.renew("node-a", NOW + 16.0, 10.0, [lease]) == set()
    _, (listed,) = await store.drains.list("hello")
    assert listed.owner == "node-b"


async def test_a_released_drain_is_claimed_at_once_and_a_removed_one_is_not_renewed(store):
    await app_with_lines(store)
    drain = await store.drains.add("hello", URL)
    await store.drains.claim("node-a", NOW, 10.0, limit=10)
    await store.drains.release("node-a", [HeldLease(drain.id, 1, 7, DrainStats(7))])
    (taken,) = await store.drains.claim("node-b", NOW + 1, 10.0, limit=10)
    assert (taken.cursor, taken.stats.sent, taken.lease_epoch) == (7, 7, 2)
    await store.drains.remove("hello", drain.id)
    assert await store.drains.renew("node-b", NOW + 2, 10.0,
                                    [HeldLease(drain.id, 2, 8, DrainStats(8))]) == set()


async def test_claims_are_bounded_and_deleting_the_app_deletes_its_drains(store):
    await app_with_lines(store)
    for n in range(3):
        await store.drains.add("hello", f"syslog://logs.example.com:{1000 + n}")
    assert len(await store.drains.claim("node-a", NOW, 10.0, limit=2)) == 2
    assert len(await store.drains.claim("node-b", NOW, 10.0, limit=2)) == 1
    await store.apps.delete("hello")
    assert await store.drains.count() == 0


async def test_a_drain_is_removed_by_its_masked_url_when_only_it_shows_so(store):
    await app_with_lines(store)
    one = await store.drains.add("hello", "https://u:first@logs.example.com/in")
    two = await store.drains.add("hello", "https://u:second@logs.example.com/in")
    alone = await store.drains.add("hello", "https://logs.example.com/other?key=K3y")
    assert (await store.drains.remove("hello", "https://logs.example.com/other?key=****")).id \
        == alone.id
    with pytest.raises(errors.Conflict, match=r"2 drains .* name one by its token \(d\.…\)"):
        await store.drains.remove("hello", "https://u:****@logs.example.com/in")
    assert (await store.drains.remove("hello", two.token)).id == two.id
    assert (await store.drains.remove("hello", "https://u:****@logs.example.com/in")).id \
        == one.id


async def test_a_url_that_names_no_drain_is_not_repeated_unmasked(store):
    await app_with_lines(store)
    with pytest.raises(errors.NotFound) as missing:
        await store.drains.remove("hello", "https://user:hunter2@logs.example.com/in?key=K3y")
    assert "hunter2" not in str(missing.value) and "K3y" not in str(missing.value)
    assert "https://user:****@logs.example.com/in?key=****" in str(missing.value)


async def test_the_same_receiver_spelled_another_way_is_refused_as_a_duplicate(store):
    await app_with_lines(store)
    drain = await store.drains.add("hello", "syslog+tls://Logs.Example.com")
    with pytest.raises(errors.Conflict, match=f"already drains to that URL .drain {drain.token}"):
        await store.drains.add("hello", "syslog+tls://logs.example.com:6514")
    assert (await store.drains.remove("hello", "syslog+tls://logs.example.com:6514")).id \
        == drain.id
