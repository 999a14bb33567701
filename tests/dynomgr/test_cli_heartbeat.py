"""`dynomesh dynomgr --heartbeat-interval`: how often a following agent heart-beats."""

from __future__ import annotations

import pytest

from dynomgr.cli import build_follow, build_parser

pytestmark = pytest.mark.unit


def follow_of(tmp_path, *flags: str):
    token = tmp_path / "dynomgr.token"
    token.write_text("dmt_secret\n")
    args = build_parser().parse_args(
        ["--control", "http://10.0.0.2:5050", "--token-file", str(token), *flags])
    return build_follow(args)


def test_the_heartbeat_interval_defaults_to_five_seconds(tmp_path):
    assert follow_of(tmp_path).report.heartbeat_interval == 5.0


def test_a_short_heartbeat_interval_goes_to_the_reporter(tmp_path):
    assert follow_of(tmp_path, "--heartbeat-interval", "0.5").report.heartbeat_interval == 0.5


def test_a_heartbeat_interval_of_zero_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--heartbeat-interval: .*above 0 seconds"):
        follow_of(tmp_path, "--heartbeat-interval", "0")


def test_the_heartbeat_interval_goes_with_control():
    args = build_parser().parse_args(["--assignments", "a.json", "--heartbeat-interval", "1"])
    with pytest.raises(ValueError, match="--heartbeat-interval goes with --control"):
        build_follow(args)
