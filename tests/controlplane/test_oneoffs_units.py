"""One-off dynos' pure parts: the release phase's verdict and kept output, numbering, the
spec's JSON, the assignment entry, and the CLI's command line and --env."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from controlplane.cli.commands.run import command_line, env_pairs
from controlplane.cli.errors import CliError
from controlplane.feeds.assignments import assignment_entries
from controlplane.store.models import Assignment, OneOff, ReleaseStatus
from controlplane.store.oneoffs import (PHASE_OUTPUT_CHARS, one_off_number, output_tail,
                                        phase_verdict)
from tests.controlplane.test_planner import dyno

pytestmark = pytest.mark.unit


def test_a_release_phase_succeeds_only_by_exiting_0():
    assert phase_verdict(0, None) == (ReleaseStatus.SUCCEEDED, "Release phase succeeded")
    assert phase_verdict(3, None) == (ReleaseStatus.FAILED,
                                      "Release phase failed: exited with status 3")
    assert phase_verdict(None, "timed out after 60 s") == (
        ReleaseStatus.FAILED, "Release phase failed: timed out after 60 s")
    assert phase_verdict(None, None)[1] == "Release phase failed: it did not finish"


def test_a_release_keeps_the_tail_of_its_phase_s_output_then_the_verdict():
    assert output_tail("a\nb", "ok") == "a\nb\nok"
    assert output_tail("", "ok") == "ok"
    long = "x" * (PHASE_OUTPUT_CHARS + 10) + "\n"
    kept = output_tail(long, "ok")
    assert len(kept) == PHASE_OUTPUT_CHARS + len("ok") and kept.endswith("x\nok")


def test_one_off_numbers_avoid_those_in_use():
    rng = random.Random(7)
    first = one_off_number(set(), rng)
    assert 1000 <= first <= 9999
    everything_but_one = set(range(1000, 10000)) - {4242}
    assert one_off_number(everything_but_one, random.Random(1)) == 4242


def test_a_one_off_spec_survives_its_json():
    spec = OneOff("bash -l", attach_url="http://10.0.0.1:5050", tty=(120, 40),
                  env={"DEBUG": "1"}, timeout=60, release_phase=False)
    assert OneOff.from_json(spec.to_json()) == spec
    assert OneOff.from_json(OneOff("true").to_json()) == OneOff("true")


def test_a_one_off_assignment_carries_its_command_session_and_limits():
    run = replace(dyno("run.1234", vm="vm-1"), one_off=OneOff(
        "bash", attach_url="http://10.0.0.1:5050/", tty=(80, 24), env={"A": "2"}, timeout=90))
    formation = dyno("web.1", vm="vm-1")
    entries = assignment_entries([
        Assignment(run, "hello", "s-1", "sha256:" + "ab" * 32, {"A": "1", "B": "1"}),
        Assignment(formation, "hello", "s-1", "sha256:" + "ab" * 32, {"A": "1"})],
        "http://10.0.0.1:5050")
    one = entries[run.id]
    assert one["kind"] == "one-off" and one["command"] == "bash" and one["timeout"] == 90
    assert one["attach"] == f"http://10.0.0.1:5050/vms/vm-1/dynos/{run.id}/attach"
    assert one["tty"] == [80, 24] and one["env"] == {"A": "2", "B": "1"}  # its own env wins
    assert entries[formation.id]["kind"] == "formation"
    assert "command" not in entries[formation.id]


def test_a_detached_one_off_has_no_session():
    run = replace(dyno("run.1", vm="vm-1"), one_off=OneOff("echo hi"))
    (entry,) = assignment_entries([Assignment(run, "hello", "s", "sha256:" + "ab" * 32, {})],
                                  "http://c").values()
    assert entry["attach"] is None and entry["tty"] is None


def test_the_cli_runs_one_argument_as_a_shell_line_and_quotes_several():
    assert command_line(["echo $HOME"]) == "echo $HOME"
    assert command_line(["python3", "-c", "print('hi there')"]) == \
        "python3 -c 'print('\"'\"'hi there'\"'\"')'"
    assert command_line(["--", "ls", "-l"]) == "ls -l"
    with pytest.raises(CliError, match="say what to run"):
        command_line([])


def test_the_cli_reads_env_as_heroku_does():
    assert env_pairs(["A=1", "B=2;C=x=y", ""]) == {"A": "1", "B": "2", "C": "x=y"}
    with pytest.raises(CliError, match="expected KEY=VALUE"):
        env_pairs(["JUSTAKEY"])
    with pytest.raises(CliError, match="invalid config var name"):
        env_pairs(["BAD KEY=x"])
