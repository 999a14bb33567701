"""The formation planner: formation, release and dynos in, steps out (pure, no I/O)."""

from __future__ import annotations

import itertools

from controlplane.scheduler.planner import (AppSpec, Create, ProcessSpec, Remove, Rerelease,
                                            Serve, StartTakeOut, plan_app)
from controlplane.store.models import Dyno, ObservedState, TakeOut
import pytest

pytestmark = pytest.mark.unit

_ids = itertools.count(1)


def dyno(name: str, *, release: int = 1, state: ObservedState | None = ObservedState.UP,
         serving: bool = True, take_out: TakeOut | None = None, size: str = "standard-1x",
         vm: str | None = "vm-1") -> Dyno:
    type_, number = name.split(".")
    n = next(_ids)
    return Dyno(id=f"d-{n}", app_id="app-1", type=type_, number=int(number), release=release,
                size=size, memory_mb=512, vm_id=vm, serving=serving, restart_generation=0,
                take_out=take_out, take_out_revision=None if take_out is None else 5,
                take_out_at=None, state=state,
                address=f"10.0.0.1:{20000 + n}" if state is ObservedState.UP else None,
                state_since=1.0, restarts=0, reason=None, error_code=None,
                created_at=f"2026-01-01T00:00:{n:02d}Z")


def app(release: int | None = 1, *, web: int = 0, worker: int = 0, preboot: bool = False,
        size: str = "standard-1x") -> AppSpec:
    processes = {"web": ProcessSpec("web", web, size, 512),
                 "worker": ProcessSpec("worker", worker, "standard-1x", 512)}
    return AppSpec("app-1", "hello", release, processes, preboot)


def kinds(actions) -> list[str]:
    names = []
    for action in actions:
        match action:
            case Create():
                names.append(f"create {action.name}" + ("" if action.serving else " preboot"))
            case Remove():
                names.append(f"remove {action.dyno.name}")
            case StartTakeOut():
                names.append(f"take out {action.dyno.name} then {action.then.value}")
            case Rerelease():
                names.append(f"rerelease {action.dyno.name} v{action.release}")
            case Serve():
                names.append("serve " + ",".join(d.name for d in action.dynos)
                             + (f" switch v{action.switched_to}" if action.switched_to else ""))
    return names


def test_formation_becomes_numbered_dynos():
    assert kinds(plan_app(app(web=3, worker=1), [])) == [
        "create web.1", "create web.2", "create web.3", "create worker.1"]


def test_a_converged_app_needs_nothing():
    dynos = [dyno("web.1"), dyno("web.2"), dyno("worker.1", state=ObservedState.UP)]
    assert plan_app(app(web=2, worker=1), dynos) == []


def test_scale_down_takes_routable_web_dynos_out_and_removes_the_rest():
    dynos = [dyno("web.1"), dyno("web.2"), dyno("web.3", state=ObservedState.CRASHED),
             dyno("worker.1"), dyno("worker.2")]
    assert sorted(kinds(plan_app(app(web=1, worker=1), dynos))) == [
        "remove web.3", "remove worker.2", "take out web.2 then stop"]


def test_a_dyno_being_taken_out_still_holds_its_number():
    dynos = [dyno("web.1"), dyno("web.2", take_out=TakeOut.STOP)]
    assert kinds(plan_app(app(web=2), dynos)) == []  # web.2 comes back once the old one is gone


def test_a_new_release_without_preboot_takes_old_web_dynos_out_before_replacing_them():
    dynos = [dyno("web.1"), dyno("web.2", state=ObservedState.STARTING)]
    actions = kinds(plan_app(app(release=2, web=2), dynos))
    # web.1 is routable: out first, replaced once gone; web.2 serves nobody: replaced at once.
    assert actions == ["take out web.1 then stop", "remove web.2", "create web.2"]


def test_workers_restart_in_place_on_a_new_release():
    dynos = [dyno("worker.1"), dyno("worker.2", state=ObservedState.CRASHED)]
    assert kinds(plan_app(app(release=2, worker=2), dynos)) == [
        "rerelease worker.1 v2", "rerelease worker.2 v2"]


def test_a_new_size_replaces_a_worker_and_takes_out_a_web_dyno():
    dynos = [dyno("web.1"), dyno("worker.1")]
    actions = kinds(plan_app(app(web=1, worker=1, size="standard-2x"), dynos))
    assert actions[0] == "take out web.1 then stop"
    assert "create web.1" not in actions  # not before the old web.1 is gone
    worker = app(web=0, worker=1)
    worker = AppSpec(worker.id, worker.name, 1,
                     {"worker": ProcessSpec("worker", 1, "standard-2x", 1024)})
    assert kinds(plan_app(worker, [dyno("worker.1")])) == ["remove worker.1", "create worker.1"]


def test_without_a_runnable_release_every_dyno_goes():
    dynos = [dyno("web.1"), dyno("worker.1")]
    assert kinds(plan_app(app(release=None, web=1, worker=1), dynos)) == [
        "take out web.1 then stop", "remove worker.1"]


def test_a_process_type_gone_from_the_procfile_goes():
    dynos = [dyno("web.1"), dyno("clock.1")]
    assert kinds(plan_app(app(web=1), dynos)) == ["remove clock.1"]


def test_a_dyno_restarting_after_a_take_out_is_kept_but_stopped_if_scaled_away():
    restarting = dyno("web.2", take_out=TakeOut.RESTART)
    assert plan_app(app(web=2), [dyno("web.1"), restarting]) == []
    actions = plan_app(app(web=1), [dyno("web.1"), restarting])
    assert kinds(actions) == ["take out web.2 then stop"]


def test_two_dynos_with_one_number_keep_the_serving_one():
    actions = kinds(plan_app(app(web=1), [dyno("web.1", serving=False), dyno("web.1")]))
    assert actions == ["remove web.1"] and len(actions) == 1


# --- preboot ---

def test_preboot_starts_new_dynos_beside_the_serving_ones():
    old = [dyno("web.1"), dyno("web.2")]
    assert kinds(plan_app(app(release=2, web=2, preboot=True), old)) == [
        "create web.1 preboot", "create web.2 preboot"]


def test_preboot_waits_until_every_new_dyno_is_up():
    old = [dyno("web.1"), dyno("web.2")]
    new = [dyno("web.1", release=2, serving=False),
           dyno("web.2", release=2, serving=False, state=ObservedState.STARTING)]
    assert plan_app(app(release=2, web=2, preboot=True), old + new) == []


def test_preboot_switches_routes_and_takes_the_old_dynos_out_in_one_plan():
    old = [dyno("web.1"), dyno("web.2", state=ObservedState.CRASHED)]
    new = [dyno("web.1", release=2, serving=False), dyno("web.2", release=2, serving=False)]
    actions = plan_app(app(release=2, web=2, preboot=True), old + new)
    assert kinds(actions) == ["serve web.1,web.2 switch v2", "take out web.1 then stop",
                              "remove web.2"]
    assert {d.id for d in actions[0].dynos} == {d.id for d in new}


def test_a_superseded_preboot_is_dropped_for_the_newest_release():
    old = [dyno("web.1")]
    stale = [dyno("web.1", release=2, serving=False)]
    assert kinds(plan_app(app(release=3, web=1, preboot=True), old + stale)) == [
        "remove web.1", "create web.1 preboot"]


def test_preboot_scaled_to_zero_just_takes_the_old_dynos_out():
    assert kinds(plan_app(app(release=2, web=0, preboot=True), [dyno("web.1")])) == [
        "take out web.1 then stop"]


def test_turning_preboot_off_mid_rollout_serves_the_new_dynos_and_retires_the_old():
    old = [dyno("web.1")]
    new = [dyno("web.1", release=2, serving=False, state=ObservedState.STARTING)]
    assert kinds(plan_app(app(release=2, web=1, preboot=False), old + new)) == [
        "take out web.1 then stop", "serve web.1"]


def test_preboot_on_a_first_deploy_creates_serving_dynos():
    assert kinds(plan_app(app(release=1, web=2, preboot=True), [])) == [
        "create web.1", "create web.2"]


def test_preboot_leaves_workers_to_restart_in_place():
    dynos = [dyno("web.1"), dyno("worker.1")]
    assert kinds(plan_app(app(release=2, web=1, worker=1, preboot=True), dynos)) == [
        "create web.1 preboot", "rerelease worker.1 v2"]


def test_one_off_dynos_are_no_formation_s_and_are_left_alone():
    from dataclasses import replace

    from controlplane.store.models import OneOff

    run = replace(dyno("run.4821", release=1), one_off=OneOff("bash"))
    phase = replace(dyno("release.1234", release=2), one_off=OneOff("migrate",
                                                                    release_phase=True))
    assert plan_app(app(web=1), [dyno("web.1"), run, phase]) == []
    assert kinds(plan_app(app(release=None), [run])) == []  # even with nothing to run
