"""Automatic certificates' state in the store, on SQLite and PostgreSQL (Migration 11): which
domains are managed, their status, and challenges in (and out of) the app's route entry."""

from __future__ import annotations

from controlplane.store.feeds import route_facts


async def facts(store, app: str):
    async with store.db.read() as tx:
        return (await route_facts(tx, [app], "localhost"))[app]


async def test_managed_domains_their_status_and_challenges_in_the_route_entry(store):
    await store.apps.create("shop")
    for host in ("www.shop.test", "*.shop.test", "api.shop.test"):
        await store.apps.add_domain("shop", host)
    app, enabled, domains = await store.acme.status("shop")
    assert (enabled, domains) == (False, [])
    assert await store.acme.work() == []

    await store.acme.set_enabled("shop", True)
    _, enabled, domains = await store.acme.status("shop")
    # Wildcards are not managed; the others are pending until attempted.
    assert enabled and [(d.hostname, d.status) for d in domains] == [
        ("api.shop.test", "pending"), ("www.shop.test", "pending")]
    api, www = domains

    revision = await store.acme.publish(www, "tok_en-1234567890abc", "tok_en-1234567890abc.th")
    assert revision == store.db.signal.revision
    assert (await facts(store, "shop")).acme_challenges == (
        ("tok_en-1234567890abc", "tok_en-1234567890abc.th"),)
    await store.acme.record(api, status="failed", reason="connection: refused",
                            not_after=None, failures=1, retry_at=123.0)
    await store.acme.record(www, status="issued", reason=None, not_after=2e9, failures=0,
                            retry_at=None)
    by_host = {d.hostname: d for d in await store.acme.work()}
    assert (by_host["api.shop.test"].reason, by_host["api.shop.test"].retry_at) == (
        "connection: refused", 123.0)
    assert by_host["www.shop.test"].status == "issued" and by_host["www.shop.test"].challenge

    # What a crash left behind is cleared in one go; a withdrawn challenge leaves the entry.
    assert await store.acme.withdraw_all() == 1
    assert (await facts(store, "shop")).acme_challenges == ()
    assert await store.acme.withdraw_all() == 0

    # Enabling again retries failed domains now; a removed domain's state goes with it.
    _, enabled, domains = await store.acme.set_enabled("shop", True)  # what it left
    assert enabled and {d.hostname: d.retry_at for d in domains}["api.shop.test"] is None
    assert {d.hostname: d.retry_at for d in await store.acme.work()}["api.shop.test"] is None
    await store.apps.remove_domain("shop", "api.shop.test")
    await store.acme.record(api, status="failed", reason="late", not_after=None, failures=2,
                            retry_at=5.0)  # an attempt that ended after the removal
    assert [d.hostname for d in await store.acme.work()] == ["www.shop.test"]

    # Off: the state goes, and the account key (kept per CA) is the first one saved.
    assert (await store.acme.set_enabled("shop", False))[1:] == (False, [])
    assert await store.acme.work() == [] and (await store.acme.status("shop"))[1] is False
    assert await store.acme.save_account_key("https://ca/dir", "sealed-1") == "sealed-1"
    assert await store.acme.save_account_key("https://ca/dir", "sealed-2") == "sealed-1"
    assert await store.acme.account_key("https://ca/dir") == "sealed-1"
