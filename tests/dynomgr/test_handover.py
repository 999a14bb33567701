"""The record a handing-over agent leaves for its successor: written and read back exactly,
and refused (with the reason) when it cannot be trusted to name a running dyno."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from dynomgr.assignments import parse_entry
from dynomgr.handover import HandoverError, KeptDyno, is_kept, parse_kept
from dynomgr.state import DynoState

pytestmark = pytest.mark.unit

SCHEMES = frozenset({"file", "http", "https"})


def kept(**changes) -> KeptDyno:
    assignment = parse_entry({"kind": "formation", "name": "web.1", "app": "hello", "type": "web",
                              "release": 3, "slug": {"url": "file:///s.tgz", "sha256": "ab" * 32},
                              "env": {"A": "1"}, "memory_mb": 256, "id": "d-1", "restart": 2}, SCHEMES)
    fields = dict(assignment=assignment, instance="1a2b3c4d", life=2, pid=4242, start_ticks=987654,
                  marker="agent.1a2b3c4d-2", cgroup=Path("/sys/fs/cgroup/dynomesh-x/1a2b3c4d-2"),
                  port=20017, address="10.0.1.7:20017", state=DynoState.UP, since=1.5e9,
                  restarts=4, crashes=3, launched_at=1.4e9, directory=Path("/data/dynos/hello/web.1.1a2b3c4d"),
                  outputs=((Path("/data/run/1a2b3c4d-2.out"), "half a líne".encode()),
                           (Path("/data/run/1a2b3c4d-2.err"), b"")))
    fields.update(changes)
    return KeptDyno(**fields)


def test_a_kept_dyno_reads_back_exactly_as_written():
    original = kept()
    record = original.to_record()
    assert is_kept(record) and record["pid"] == 4242 and record["start_ticks"] == 987654
    assert parse_kept(record, SCHEMES) == original
    assert original.record_id == "1a2b3c4d-2"


def test_a_worker_without_port_or_cgroup_reads_back_too():
    original = kept(port=None, address=None, cgroup=None, state=DynoState.STARTING,
                    outputs=((Path("/o"), b""), (Path("/e"), b"")))
    assert parse_kept(original.to_record(), SCHEMES) == original


def test_a_crashed_agents_record_is_not_kept():
    assert not is_kept({"app": "hello", "dyno": "web.1", "pid": 5, "start_ticks": 1, "marker": "m"})


@pytest.mark.parametrize("mutate, says", [
    (lambda k: k.pop("pid"), "lacks 'pid'"),
    (lambda k: k.update(pid="12"), "expected an integer"),
    (lambda k: k.update(pid=1), "pid 1"),
    (lambda k: k.update(state="crashed"), "state crashed is not handed over"),
    (lambda k: k.update(state="sleeping"), "malformed"),
    (lambda k: k["outputs"][1].update(tail="zz"), "malformed"),
    (lambda k: k.update(outputs=[]), "expected a list of output FIFOs"),
    (lambda k: k["assignment"].update(release=0), "release must be a positive integer"),
])
def test_a_record_that_cannot_be_trusted_is_refused_naming_why(mutate, says):
    record = copy.deepcopy(kept().to_record())
    mutate(record["kept"])
    with pytest.raises(HandoverError, match=says):
        parse_kept(record, SCHEMES)


def test_a_record_of_the_first_version_with_one_fifo_for_both_streams_is_still_read():
    record = copy.deepcopy(kept().to_record())
    del record["kept"]["outputs"]
    del record["kept"]["crashes"]
    record["kept"].update(output="/data/run/1a2b3c4d-2.out", tail=b"half".hex())
    old = parse_kept(record, SCHEMES)
    assert old.outputs == ((Path("/data/run/1a2b3c4d-2.out"), b"half"),) and old.crashes == 0
