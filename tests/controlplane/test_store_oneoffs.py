"""One-off dynos and the release phase in the store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from controlplane.store import errors
from controlplane.store.feeds import assignments
from controlplane.store.models import (FormationUpdate, ObservedReport, ObservedState, OneOff,
                                       ReleaseStatus, VmRegistration)
from tests.controlplane.test_store import deployed

VM = VmRegistration("10.0.0.5", 4096, (20000, 20009), "test")
WITH_RELEASE = {"web": "python3 web.py", "release": "python3 manage.py migrate"}


async def placed(store, vm_id: str = "vm-1"):
    """One scheduling pass that places every unplaced dyno on `vm_id`; the dynos it placed."""
    await store.vms.register(vm_id, VM, now=1.0)
    epoch = await store.nodes.claim_leadership("node-a", 1.0)
    async with store.fleet.scheduling(epoch) as fleet:
        unplaced = await fleet.unplaced()
        for dyno, app_name in unplaced:
            await fleet.place(dyno, app_name, vm_id)
    return [dyno for dyno, _ in unplaced]


async def ended(store, dyno, *, exit_status, output="", vm_id="vm-1"):
    return await store.vms.report_states(vm_id, [ObservedReport(
        dyno.id, ObservedState.DOWN, since=5.0, exit_status=exit_status, output=output,
        reason="Process exited")], now=5.0)


async def release_of(store, slug_id: str, types=WITH_RELEASE):
    await store.releases.add_slug("hello", slug_id=slug_id, checksum="sha256:" + "cd" * 32,
                                  size=1, process_types=types)
    return await store.releases.create("hello", slug_id)


async def test_a_release_with_a_release_phase_waits_for_it_in_a_one_off_dyno(store):
    first = await deployed(store)
    second = await release_of(store, "slug-2")
    assert second.status is ReleaseStatus.PENDING and second.has_release_phase
    assert (await store.releases.current("hello")).version == first.version
    (phase,) = await placed(store)
    assert phase.type == "release" and phase.release == second.version
    assert phase.one_off == OneOff("python3 manage.py migrate", timeout=3600, release_phase=True)
    async with store.db.read() as tx:
        (entry,) = await assignments(tx, "vm-1")
    assert entry.dyno.one_off.release_phase

    await ended(store, phase, exit_status=0, output="Applying 0001_initial... OK\n")
    done = await store.releases.get("hello", second.version)
    assert done.status is ReleaseStatus.SUCCEEDED and done.current
    assert done.phase_output == "Applying 0001_initial... OK\nRelease phase succeeded"
    assert (await store.dynos.list("hello")).dynos == []  # the one-off is gone, not restarted
    # `release` runs once per release; it never becomes a process type to scale.
    assert [e.type for e in await store.releases.formation("hello")] == ["web"]


async def test_a_failing_release_phase_fails_its_release_and_the_previous_one_stays(store):
    first = await deployed(store)
    second = await release_of(store, "slug-2")
    (phase,) = await placed(store)
    await ended(store, phase, exit_status=3, output="boom\n")
    failed = await store.releases.get("hello", second.version)
    assert failed.status is ReleaseStatus.FAILED and not failed.current
    assert failed.phase_output == "boom\nRelease phase failed: exited with status 3"
    assert (await store.releases.current("hello")).version == first.version
    again = await ended(store, phase, exit_status=0)  # a report sent twice changes nothing
    assert again.ignored == 1
    assert (await store.releases.get("hello", second.version)).status is ReleaseStatus.FAILED


async def test_a_release_phase_that_did_not_exit_by_itself_fails_its_release(store):
    await deployed(store)
    second = await release_of(store, "slug-2")
    (phase,) = await placed(store)
    await store.vms.report_states("vm-1", [ObservedReport(
        phase.id, ObservedState.DOWN, since=5.0, output="", reason="timed out after 3600 s")],
        now=5.0)
    failed = await store.releases.get("hello", second.version)
    assert failed.status is ReleaseStatus.FAILED
    assert failed.phase_output.endswith("Release phase failed: timed out after 3600 s")


async def test_stopping_a_release_phase_fails_its_release(store):
    await deployed(store)
    second = await release_of(store, "slug-2")
    (phase,) = await placed(store)
    await store.dynos.stop("hello", phase.name)
    assert (await store.releases.get("hello", second.version)).status is ReleaseStatus.FAILED
    assert (await store.dynos.list("hello")).dynos == []


async def test_release_is_never_scaled(store):
    await store.apps.create("hello")
    await release_of(store, "slug-1", {"web": "python3 web.py", "release": "true"})
    with pytest.raises(errors.Invalid, match="release phase's command"):
        await store.releases.scale("hello", [FormationUpdate("release", 1)])


async def test_a_one_off_dyno_runs_the_current_release_and_ends_with_its_report(store):
    await deployed(store)
    spec = OneOff("bash", attach_url="http://127.0.0.1:5050", tty=(80, 24), env={"A": "1"},
                  timeout=60)
    app, dyno = await store.oneoffs.run("hello", spec, size="standard-1x", memory_mb=512,
                                        type_="run")
    assert dyno.name.startswith("run.") and dyno.vm_id is None and dyno.one_off == spec
    (placed_dyno,) = [d for d in await placed(store) if d.id == dyno.id]
    assert await store.oneoffs.placed_on(dyno.id, "vm-1")
    assert not await store.oneoffs.placed_on(dyno.id, "vm-2")
    await store.vms.report_states("vm-1", [ObservedReport(
        dyno.id, ObservedState.UP, since=2.0)], now=2.0)
    assert (await store.dynos.get("hello", dyno.name))[1].state is ObservedState.UP
    with pytest.raises(errors.Invalid, match="never restarted"):
        await store.dynos.restart("hello", dyno.name)
    await ended(store, placed_dyno, exit_status=0)
    assert [d.name for d in (await store.dynos.list("hello")).dynos] == []


async def test_a_one_off_dyno_needs_code_to_run(store):
    await store.apps.create("empty")
    with pytest.raises(errors.Invalid, match="no code to run yet"):
        await store.oneoffs.run("empty", OneOff("ls"), size="standard-1x", memory_mb=512,
                                type_="run")


async def test_a_one_off_whose_caller_left_is_abandoned(store):
    await deployed(store)
    _, dyno = await store.oneoffs.run("hello", OneOff("bash", attach_url="http://x"),
                                      size="standard-1x", memory_mb=512, type_="run")
    await store.oneoffs.abandon(dyno.id)
    await store.oneoffs.abandon(dyno.id)  # twice: nothing left to do
    assert (await store.dynos.list("hello")).dynos == []
