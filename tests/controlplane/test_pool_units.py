"""Pure parts of the pool: drain steps, the planner and drain twins, user-data, EC2's
request and error codes."""

from __future__ import annotations

import itertools
import shlex

import pytest

from controlplane.pool.ec2 import Ec2Provider, Ec2Settings, _failure
from controlplane.pool.provider import Boot
from controlplane.pool.userdata import SCRIPT_PATH, TOKEN_PATH, render
from controlplane.scheduler.drain import DropTwin, MakeTwin, Move, Switch, plan_drain
from controlplane.scheduler.planner import Remove, StartTakeOut, plan_app
from controlplane.store.models import Dyno, ObservedState, OneOff, TakeOut
from tests.controlplane.ec2pool import written_files
from tests.controlplane.test_planner import app

pytestmark = pytest.mark.unit

_ids = itertools.count(1)
UP = ObservedState.UP


def dyno(name: str, vm: str | None, *, state=UP, serving: bool = True, replaces=None,
         take_out=None, release: int = 1, one_off: OneOff | None = None) -> Dyno:
    type_, number = name.split(".")
    n = next(_ids)
    return Dyno(id=f"d-{n}", app_id="app-1", type=type_, number=int(number), release=release,
                size="standard-1x", memory_mb=512, vm_id=vm, serving=serving,
                restart_generation=0, take_out=take_out,
                take_out_revision=None if take_out is None else 5, take_out_at=None,
                state=state, address=f"10.0.0.1:{20000 + n}" if state is UP else None,
                state_since=1.0, restarts=0, reason=None, error_code=None,
                created_at=f"2026-01-01T00:00:{n:02d}Z", one_off=one_off, replaces=replaces)


# --- drain steps ---

def test_an_up_dyno_on_a_draining_vm_gets_a_twin_and_switches_once_it_is_up():
    web = dyno("web.1", "vm-old")
    assert plan_drain([web], [], {"vm-old"}) == [MakeTwin(web)]
    booting = dyno("web.1", "vm-new", state=ObservedState.STARTING, serving=False,
                   replaces=web.id)
    assert plan_drain([web], [booting], {"vm-old"}) == []  # waits for the twin
    twin = dyno("web.1", "vm-new", serving=False, replaces=web.id)
    assert plan_drain([web], [twin], {"vm-old"}) == [Switch(web, twin)]


def test_a_dyno_that_is_not_up_moves_at_once_and_one_on_its_way_out_is_left():
    crashed = dyno("web.1", "vm-old", state=ObservedState.CRASHED)
    leaving = dyno("web.2", "vm-old", take_out=TakeOut.STOP)
    assert plan_drain([crashed, leaving], [], {"vm-old"}) == [Move(crashed)]


def test_a_one_off_dyno_on_a_draining_vm_is_neither_twinned_nor_moved():
    # Moving `dynomesh run`'s dyno (or a release phase) would run its command a second time.
    session = dyno("run.4821", "vm-old", serving=False, one_off=OneOff("bash"))
    phase = dyno("release.2", "vm-old", serving=False,
                 state=ObservedState.STARTING, one_off=OneOff("migrate", release_phase=True))
    worker = dyno("worker.1", "vm-old")
    assert plan_drain([session, phase, worker], [], {"vm-old"}) == [MakeTwin(worker)]


def test_twins_whose_original_left_or_is_no_longer_draining_are_dropped():
    web = dyno("web.1", "vm-a")
    stray = dyno("web.1", "vm-b", serving=False, replaces="d-gone")
    kept = dyno("web.1", "vm-b", serving=False, replaces=web.id)
    assert plan_drain([], [stray, kept], set()) == [DropTwin(stray), DropTwin(kept)]


def test_a_twin_of_another_release_is_dropped():
    web = dyno("web.1", "vm-old", release=2)
    old_twin = dyno("web.1", "vm-new", serving=False, replaces=web.id, release=1)
    assert plan_drain([web], [old_twin], {"vm-old"}) == [DropTwin(old_twin), MakeTwin(web)]


# --- the planner leaves twins to the drain ---

def test_the_planner_leaves_a_twin_alone_while_its_original_lives():
    web = dyno("web.1", "vm-old")
    twin = dyno("web.1", "vm-new", serving=False, replaces=web.id)
    assert plan_app(app(web=1), [web, twin]) == []


def test_scaling_down_retires_a_twin_with_its_original():
    web1, web2 = dyno("web.1", "vm-a"), dyno("web.2", "vm-old")
    twin = dyno("web.2", "vm-a", serving=False, replaces=web2.id)
    actions = plan_app(app(web=1), [web1, web2, twin])
    assert actions == [StartTakeOut(web2, TakeOut.STOP), Remove(twin)]


# --- user-data ---

BOOT = Boot("vm-1a2b", "dmt_secret", ("http://10.0.0.2:5050", "http://10.0.0.3:5050"), 3584)


def test_the_user_data_writes_the_token_and_a_start_script_with_the_agents_arguments():
    text = render(BOOT, "python3 -m pip install dynomesh")
    assert text.startswith("#cloud-config\n")
    files = written_files(text)
    assert files[TOKEN_PATH] == "dmt_secret\n"
    exec_line = next(line for line in files[SCRIPT_PATH].splitlines()
                     if line.startswith("exec "))
    assert shlex.split(exec_line)[:9] == [
        "exec", "dynomesh", "dynomgr", "--control", "http://10.0.0.2:5050,http://10.0.0.3:5050",
        "--token-file", TOKEN_PATH, "--capacity-mb", "3584"]
    assert exec_line.endswith('"$@"')  # what a caller adds comes last and wins
    assert "python3 -m pip install dynomesh" in text


def test_user_data_too_big_for_ec2_is_refused_with_what_to_shorten():
    with pytest.raises(ValueError, match="shorten the install command"):
        render(BOOT, "x" * 20_000)


# --- EC2 requests and error codes ---

def test_run_parameters_from_a_launch_template_or_an_ami():
    by_template = Ec2Provider(Ec2Settings(launch_template="lt-0abc", pool_name="web"))
    params = by_template.run_parameters(BOOT)
    assert params["LaunchTemplate"] == {"LaunchTemplateId": "lt-0abc", "Version": "$Default"}
    assert "ImageId" not in params
    assert params["TagSpecifications"][0]["Tags"][:2] == [
        {"Key": "dynomesh:pool", "Value": "web"}, {"Key": "dynomesh:vm", "Value": "vm-1a2b"}]
    by_ami = Ec2Provider(Ec2Settings(image_id="ami-1", instance_type="m6i.large",
                                     subnet_id="subnet-1", security_groups=("sg-1", "sg-2")))
    params = by_ami.run_parameters(BOOT)
    assert (params["ImageId"], params["InstanceType"], params["SubnetId"],
            params["SecurityGroupIds"]) == ("ami-1", "m6i.large", "subnet-1", ["sg-1", "sg-2"])
    named = Ec2Provider(Ec2Settings(launch_template="dynomesh-vm")).run_parameters(BOOT)
    assert named["LaunchTemplate"]["LaunchTemplateName"] == "dynomesh-vm"


def test_ec2_settings_need_a_template_or_an_ami_and_type():
    with pytest.raises(ValueError, match="--ec2-launch-template, or --ec2-ami"):
        Ec2Settings(image_id="ami-1")


@pytest.mark.parametrize("code, retryable", [
    ("RequestLimitExceeded", True), ("InsufficientInstanceCapacity", True),
    ("AuthFailure", False), ("InstanceLimitExceeded", False),
    ("InvalidAMIID.NotFound", False)])
def test_aws_error_codes_are_kept_and_sorted_by_whether_a_retry_may_work(code, retryable):
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": code, "Message": "no"}}, "RunInstances")
    failure = _failure(exc, "RunInstances")
    assert (failure.code, failure.message, failure.retryable) == (code, "no", retryable)


def test_botocores_own_errors_keep_their_name_as_the_code():
    from botocore.exceptions import NoCredentialsError

    failure = _failure(NoCredentialsError(), "DescribeInstances")
    assert (failure.code, failure.retryable) == ("NoCredentialsError", False)
