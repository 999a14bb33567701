"""The store suite: every test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import base64
import sqlite3

import pytest

from controlplane.store import Feed, errors
from controlplane.store.affinity import KEYS_CHANGE
from controlplane.store.feeds import route_facts
from controlplane.store.migrations import LATEST, MIGRATIONS, Migration, migrate, schema_version
from controlplane.store.models import FormationUpdate, ReleaseStatus, Role

WEB_AND_WORKER = {"web": "python web.py", "worker": "python worker.py"}


async def deployed(store, name="hello", types=WEB_AND_WORKER, slug_id=None):
    await store.apps.create(name)
    slug_id = slug_id or f"slug-{name}"
    await store.releases.add_slug(name, slug_id=slug_id, checksum="sha256:" + "ab" * 32,
                                  size=123, process_types=types)
    return await store.releases.create(name, slug_id)


# --- migrations ---

async def test_a_fresh_database_is_migrated_to_the_latest_schema(store):
    assert await schema_version(store.db) == LATEST
    assert await migrate(store.db) == []  # nothing left to apply on a second start


async def test_a_new_migration_applies_once_on_top_of_the_existing_data(store):
    await store.apps.create("keep-me")
    extra = MIGRATIONS + (Migration(LATEST + 1, "notes", (
        "CREATE TABLE notes (app_id TEXT NOT NULL REFERENCES apps (id), body TEXT NOT NULL)",)),)
    assert await migrate(store.db, extra) == [LATEST + 1]
    assert await migrate(store.db, extra) == []
    assert (await store.apps.get("keep-me")).name == "keep-me"
    async with store.db.write() as tx:
        app = await store.apps.get("keep-me")
        await tx.execute("INSERT INTO notes (app_id, body) VALUES ($1, $2)", app.id, "hi")


async def test_a_database_from_a_newer_dynomesh_is_refused(store):
    async with store.db.migration() as tx:
        await tx.execute("INSERT INTO schema_migrations (version, description, applied_at) "
                         "VALUES ($1, 'future', 'x')", LATEST + 5)
    with pytest.raises(errors.SchemaTooNew, match="newer dynomesh"):
        await migrate(store.db)


async def test_data_survives_closing_and_reopening(open_store):
    first = await open_store()
    await deployed(first)
    await first.releases.update_config("hello", {"GREETING": "hi"})
    revision = await first.revision()
    await first.close()
    second = await open_store()
    assert await second.releases.config("hello") == {"GREETING": "hi"}
    assert [r.version for r in await second.releases.list("hello")] == [2, 1]
    assert await second.revision() == revision
    assert second.db.signal.revision == revision


# --- error translation (the one layer that sees driver exceptions) ---

async def test_driver_errors_become_typed_store_errors(store):
    app = await store.apps.create("hello")
    with pytest.raises(errors.Conflict):
        async with store.db.write() as tx:
            await tx.execute("INSERT INTO apps (id, name, maintenance, created_at, updated_at) "
                             "VALUES ($1, $2, 0, 'x', 'x')", "other-id", app.name)
    with pytest.raises(errors.Conflict, match="no longer exists"):
        async with store.db.write() as tx:
            await tx.execute("INSERT INTO domains (id, app_id, hostname, created_at) "
                             "VALUES ('d', 'no-such-app', 'a.example.test', 'x')")
    with pytest.raises(errors.Invalid):
        async with store.db.write() as tx:
            await tx.execute("UPDATE formation SET quantity = -1")
            await tx.execute("INSERT INTO tokens (id, role, vm_id, digest, description, "
                             "created_at) VALUES ('t', 'dynomgr', NULL, 'd', '', 'x')")


async def test_a_failed_transaction_leaves_nothing_behind(store):
    revision = await store.revision()
    with pytest.raises(RuntimeError):
        async with store.db.write() as tx:
            await tx.execute("INSERT INTO apps (id, name, maintenance, created_at, updated_at) "
                             "VALUES ('i', 'ghost', 0, 'x', 'x')")
            await tx.record_change(Feed.ROUTES, "ghost")
            raise RuntimeError("boom")
    assert await store.apps.list() == []
    assert await store.revision() == revision
    assert (await store.changes_since(Feed.ROUTES, revision)).changes == ()



async def test_a_writer_cancelled_while_its_transaction_begins_leaves_the_store_usable(store):
    # A node that stops cancels its tasks wherever they are, also while a BEGIN runs in the
    # SQLite connection's thread; the connection must not stay inside that transaction.
    from controlplane.store.sqlite import SqliteDatabase
    if not isinstance(store.db, SqliteDatabase):
        pytest.skip("asyncpg cancels its own statements; this is the SQLite thread's case")
    # Another process's write lock on the file: our BEGIN IMMEDIATE waits for it in the
    # connection's thread (SQLite's busy timeout), where a cancellation cannot stop it.
    other = sqlite3.connect(store.db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def insert(name: str) -> None:
        async with store.db.write() as tx:
            await tx.execute("INSERT INTO apps (id, name, maintenance, created_at, updated_at) "
                             "VALUES ($1, $2, 0, 'x', 'x')", name, name)

    cancelled = asyncio.create_task(insert("cancelled"))
    await asyncio.sleep(0.2)  # its BEGIN waits for the other's lock
    cancelled.cancel()
    await asyncio.sleep(0.05)
    other.rollback()
    other.close()  # the BEGIN now goes through, after its caller was cancelled
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await insert("later")  # failed with "cannot start a transaction within a transaction"
    assert [app.name for app in await store.apps.list()] == ["later"]


# --- the global revision and the change log ---

async def test_every_change_bumps_the_revision_once_and_reads_do_not(store):
    assert await store.revision() == 0
    await store.apps.create("hello")
    assert await store.revision() == 1
    await store.apps.get("hello")
    await store.apps.list()
    assert await store.revision() == 1
    await store.apps.set_maintenance("hello", True)
    await store.apps.set_maintenance("hello", True)  # no change, no revision
    assert await store.revision() == 2
    with pytest.raises(errors.Conflict):
        await store.apps.create("hello")
    assert await store.revision() == 2


async def test_changes_since_name_the_entries_that_changed(store):
    await store.apps.create("one")
    await store.apps.create("two")
    start = await store.revision()
    await store.apps.add_domain("one", "www.one.test")
    await store.apps.set_maintenance("two", True)
    log = await store.changes_since(Feed.ROUTES, start)
    assert [(c.revision, c.key) for c in log.changes] == [(start + 1, "one"), (start + 2, "two")]
    assert log.revision == start + 2
    assert (await store.changes_since(Feed.ROUTES, log.revision)).changes == ()
    assert (await store.changes_since(Feed.ASSIGNMENTS, 0)).changes == ()


async def test_one_transaction_touching_two_entries_is_one_revision(store):
    await store.apps.create("one")
    await store.apps.create("two")
    async with store.db.write() as tx:
        first = await tx.record_change(Feed.ROUTES, "one")
        assert await tx.record_change(Feed.ROUTES, "two") == first
        assert await tx.record_change(Feed.ASSIGNMENTS, "vm-1") == first
        assert await tx.record_change(Feed.ROUTES, "one") == first
    log = await store.changes_since(Feed.ROUTES, first - 1)
    assert [(c.revision, c.key) for c in log.changes] == [(first, "one"), (first, "two")]


async def test_concurrent_writers_get_dense_revisions_in_commit_order(store):
    names = [f"app-{i:02d}" for i in range(24)]
    await asyncio.gather(*(store.apps.create(n) for n in names))
    log = await store.changes_since(Feed.ROUTES, 0)
    assert [c.revision for c in log.changes] == list(range(1, 25))
    assert sorted(c.key for c in log.changes) == names


async def test_old_history_is_pruned_and_asking_for_it_requires_a_snapshot(open_store):
    store = await open_store(history=64)
    await store.apps.create("hello")
    for i in range(135):
        await store.apps.set_maintenance("hello", i % 2 == 0)
    current = await store.revision()
    assert current == 136
    with pytest.raises(errors.HistoryExpired) as caught:
        await store.changes_since(Feed.ROUTES, 0)
    assert caught.value.current == current
    recent = await store.changes_since(Feed.ROUTES, caught.value.oldest_available)
    assert recent.changes[-1].revision == current
    with pytest.raises(errors.HistoryExpired):  # from another database's future
        await store.changes_since(Feed.ROUTES, current + 10)


async def test_the_revision_signal_wakes_waiters_after_commit(store):
    start = await store.revision()
    waiter = asyncio.create_task(store.db.signal.wait_beyond(start))
    await asyncio.sleep(0)  # one loop turn: the waiter waits before the commit
    assert not waiter.done()
    await store.apps.create("hello")
    assert await asyncio.wait_for(waiter, 10) == start + 1


# --- apps, domains, features ---

async def test_apps_are_created_listed_found_by_name_or_id_and_deleted(store):
    hello = await store.apps.create("hello")
    await store.apps.create("abc")
    assert [a.name for a in await store.apps.list()] == ["abc", "hello"]
    assert (await store.apps.get(hello.id)).name == "hello"
    deleted, _ = await store.apps.delete("hello")
    assert deleted.id == hello.id
    with pytest.raises(errors.NotFound, match="apps"):
        await store.apps.get("hello")


async def test_deleting_an_app_deletes_everything_it_owns(store):
    await deployed(store)
    await store.apps.add_domain("hello", "www.example.test")
    await store.apps.set_feature("hello", "preboot", True)
    _, slug_ids = await store.apps.delete("hello")
    assert slug_ids == ["slug-hello"]
    again = await store.apps.create("hello")
    assert again.maintenance is False
    assert await store.releases.list("hello") == []
    assert await store.releases.config("hello") == {}
    assert await store.releases.formation("hello") == []
    await store.apps.add_domain("hello", "www.example.test")  # the hostname was freed
    assert not (await store.apps.get_feature("hello", "preboot")).enabled


async def test_a_hostname_belongs_to_one_app(store):
    await store.apps.create("one")
    await store.apps.create("two")
    domain = await store.apps.add_domain("one", "*.example.test")
    with pytest.raises(errors.Conflict, match="app 'one'"):
        await store.apps.add_domain("two", "*.example.test")
    with pytest.raises(errors.Conflict, match="this app"):
        await store.apps.add_domain("one", "*.example.test")
    _, listed = await store.apps.list_domains("one")
    assert [d.hostname for d in listed] == ["*.example.test"]
    await store.apps.remove_domain("one", domain.id)
    with pytest.raises(errors.NotFound):
        await store.apps.remove_domain("one", "*.example.test")
    await store.apps.add_domain("two", "*.example.test")


async def test_features_start_disabled_and_can_be_switched(store):
    await store.apps.create("hello")
    assert [(f.name, f.enabled) for f in await store.apps.list_features("hello")] == [
        ("preboot", False), ("http-session-affinity", False)]
    await store.apps.set_feature("hello", "preboot", True)
    assert (await store.apps.get_feature("hello", "preboot")).enabled
    await store.apps.set_feature("hello", "preboot", False)
    assert not (await store.apps.get_feature("hello", "preboot")).enabled
    with pytest.raises(errors.NotFound, match="preboot"):
        await store.apps.set_feature("hello", "turbo", True)


async def test_session_affinity_changes_the_route_entry(store):
    await store.apps.create("hello")
    start = await store.revision()
    await store.apps.set_feature("hello", "http-session-affinity", True)
    changed = await store.changes_since(Feed.ROUTES, start)
    assert [c.key for c in changed.changes] == ["hello"]
    async with store.db.read() as tx:
        assert (await route_facts(tx, ["hello"], "localhost"))["hello"].session_affinity
    await store.apps.set_feature("hello", "http-session-affinity", False)
    async with store.db.read() as tx:
        assert not (await route_facts(tx, None, "localhost"))["hello"].session_affinity


async def test_affinity_keys_are_made_once_and_rotation_keeps_the_previous_one(store):
    first = await store.affinity_keys.ensure()
    assert first is not None and await store.affinity_keys.ensure() is None
    assert len(base64.urlsafe_b64decode(first.secret + "=")) == 32
    assert first.secret not in repr(first)
    start = await store.revision()
    second, retired = await store.affinity_keys.rotate()
    assert retired == [] and [k.id for k in await store.affinity_keys.list()] == [second.id,
                                                                                 first.id]
    third, retired = await store.affinity_keys.rotate()
    assert [k.id for k in retired] == [first.id]
    assert [k.id for k in await store.affinity_keys.list()] == [third.id, second.id]
    changed = await store.changes_since(Feed.ROUTES, start)
    assert {c.key for c in changed.changes} == {KEYS_CHANGE}  # the routers hear of it


# --- slugs, releases, config vars, formation ---

async def test_a_deploy_creates_v1_and_a_formation_with_one_web_dyno(store):
    release = await deployed(store)
    assert (release.version, release.status, release.current) == (1, ReleaseStatus.SUCCEEDED, True)
    assert release.process_types == WEB_AND_WORKER
    assert release.description == "Deploy abababab"
    formation = {f.type: (f.quantity, f.size, f.command)
                 for f in await store.releases.formation("hello")}
    assert formation == {"web": (1, "standard-1x", "python web.py"),
                         "worker": (0, "standard-1x", "python worker.py")}


async def test_releasing_a_slug_of_another_app_is_refused(store):
    await deployed(store, "one")
    await store.apps.create("two")
    with pytest.raises(errors.NotFound, match="slug"):
        await store.releases.create("two", "slug-one")


async def test_config_changes_make_releases_and_none_deletes(store):
    await deployed(store)
    config, release = await store.releases.update_config("hello", {"GREETING": "hi", "B": "2"})
    assert config == {"B": "2", "GREETING": "hi"}
    assert (release.version, release.description) == (2, "Set B, GREETING config vars")
    assert release.slug_id == "slug-hello" and release.config == config
    config, release = await store.releases.update_config("hello", {"B": None, "GREETING": "hi"})
    assert config == {"GREETING": "hi"}
    assert release.description == "Remove B config vars"
    unchanged, none = await store.releases.update_config("hello", {"GREETING": "hi", "Z": None})
    assert (unchanged, none) == ({"GREETING": "hi"}, None)
    assert [r.version for r in await store.releases.list("hello")] == [3, 2, 1]


async def test_config_before_any_deploy_makes_a_release_without_a_slug(store):
    await store.apps.create("hello")
    _, release = await store.releases.update_config("hello", {"A": "1"})
    assert (release.version, release.slug_id) == (1, None)


async def test_rollback_is_a_new_release_with_the_old_slug_and_config(store):
    await deployed(store)
    await store.releases.update_config("hello", {"GREETING": "hi"})
    await store.releases.add_slug("hello", slug_id="second", checksum="sha256:" + "cd" * 32,
                                  size=5, process_types={"web": "python v2.py"})
    await store.releases.create("hello", "second")
    rolled = await store.releases.rollback("hello", "v1")
    assert (rolled.version, rolled.slug_id, rolled.config) == (4, "slug-hello", {})
    assert rolled.description == "Rollback to v1" and rolled.current
    assert await store.releases.config("hello") == {}
    assert {f.type for f in await store.releases.formation("hello")} == {"web", "worker"}
    with pytest.raises(errors.NotFound, match="releases"):
        await store.releases.rollback("hello", 99)


async def test_a_release_without_a_slug_is_not_rolled_back_to_once_the_app_has_code(store):
    await store.apps.create("hello")
    await store.releases.update_config("hello", {"A": "1"})  # v1: config before the first deploy
    await store.releases.update_config("hello", {"A": "2"})  # v2
    rolled = await store.releases.rollback("hello", "v1")  # no code yet: only config comes back
    assert (rolled.version, rolled.slug_id, rolled.config) == (3, None, {"A": "1"})
    await store.releases.add_slug("hello", slug_id="code", checksum="sha256:" + "ab" * 32,
                                  size=5, process_types={"web": "python web.py"})
    await store.releases.create("hello", "code")  # v4
    with pytest.raises(errors.Invalid, match=r"v1 has no slug .*`dynomesh releases`"):
        await store.releases.rollback("hello", "v1")
    current = await store.releases.current("hello")
    assert (current.version, current.slug_id) == (4, "code")
    assert await store.releases.config("hello") == {"A": "1"}


async def test_release_status_moves_only_forward_and_only_succeeded_is_current(store):
    await deployed(store)
    await store.releases.add_slug("hello", slug_id="next", checksum="sha256:" + "cd" * 32,
                                  size=5, process_types={"web": "python v2.py"})
    pending = await store.releases.create("hello", "next", status=ReleaseStatus.PENDING)
    assert not pending.current
    assert (await store.releases.current("hello")).version == 1
    assert {f.type for f in await store.releases.formation("hello")} == {"web", "worker"}
    done = await store.releases.set_status("hello", pending.version, ReleaseStatus.SUCCEEDED)
    assert done.current and done.status is ReleaseStatus.SUCCEEDED
    assert {f.type for f in await store.releases.formation("hello")} == {"web"}
    with pytest.raises(errors.Invalid, match="cannot become failed"):
        await store.releases.set_status("hello", pending.version, ReleaseStatus.FAILED)


async def test_a_failed_release_cannot_be_rolled_back_to(store):
    await deployed(store)
    pending = await store.releases.create("hello", "slug-hello", status=ReleaseStatus.PENDING)
    await store.releases.set_status("hello", pending.id, ReleaseStatus.FAILED)
    with pytest.raises(errors.Invalid, match="failed"):
        await store.releases.rollback("hello", pending.version)


async def test_scaling_is_a_checked_batch(store):
    await deployed(store)
    scaled = await store.releases.scale("hello", [
        FormationUpdate("web", 3), FormationUpdate("worker", 1, "standard-2x")])
    assert scaled.changed
    assert {f.type: (f.quantity, f.size) for f in scaled.formation} == {
        "web": (3, "standard-1x"), "worker": (1, "standard-2x")}
    revision = await store.revision()
    with pytest.raises(errors.NotFound, match="clock"):
        await store.releases.scale("hello", [FormationUpdate("web", 5), FormationUpdate("clock", 1)])
    assert {f.type: f.quantity for f in await store.releases.formation("hello")} == {
        "web": 3, "worker": 1}
    assert await store.revision() == revision
    unchanged = await store.releases.scale("hello", [FormationUpdate("web", 3)])
    assert not unchanged.changed and unchanged.formation == scaled.formation
    assert await store.revision() == revision  # no change, no revision


async def test_scaling_before_a_deploy_says_to_deploy(store):
    await store.apps.create("hello")
    with pytest.raises(errors.NotFound, match="deploy"):
        await store.releases.scale("hello", [FormationUpdate("web", 1)])


# --- tokens ---

async def test_tokens_are_stored_hashed_and_authenticate_by_secret(store):
    issued = await store.tokens.create(Role.ROUTER, description="edge-1")
    assert issued.secret.startswith("dmt_") and len(issued.secret) > 40
    found = await store.tokens.authenticate(issued.secret)
    assert (found.id, found.role) == (issued.token.id, Role.ROUTER)
    assert await store.tokens.authenticate(issued.secret + "x") is None
    async with store.db.read() as tx:
        stored = [r["digest"] for r in await tx.fetch("SELECT digest FROM tokens")]
    assert issued.secret not in stored and len(stored[0]) == 64
    await store.tokens.revoke(issued.token.id)
    assert await store.tokens.authenticate(issued.secret) is None


async def test_dynomgr_tokens_are_bound_to_a_vm(store):
    issued = await store.tokens.create(Role.DYNOMGR, vm_id="vm-1")
    assert (await store.tokens.authenticate(issued.secret)).vm_id == "vm-1"
    with pytest.raises(errors.Invalid):
        await store.tokens.create(Role.DYNOMGR)
    with pytest.raises(errors.Invalid):
        await store.tokens.create(Role.USER, vm_id="vm-1")
    assert [t.role for t in await store.tokens.list()] == [Role.DYNOMGR]


async def test_a_read_transaction_sees_one_snapshot_while_writes_commit(store):
    await store.apps.create("one")
    async with store.db.read() as tx:
        revision = await tx.current_revision()
        await store.apps.create("two")  # commits while the read is open
        names = [r["name"] for r in await tx.fetch("SELECT name FROM apps ORDER BY name")]
        assert (revision, names) == (1, ["one"])
    assert [a.name for a in await store.apps.list()] == ["one", "two"]
