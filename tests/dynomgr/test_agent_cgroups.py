"""A dyno's cgroup is removed when the dyno stops, even when its last process takes a while to
leave it.

cgroup.procs stops listing a process once its last thread began to exit, but the cgroup stays
populated (rmdir: EBUSY) until the kernel is done tearing the process down, which for a process
with a lot of memory takes a noticeable time (on a busy machine, longer).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from dynomgr.markers import cgroup2_mount, own_cgroup
from tests.dynomgr.test_agent_stops import cgroups_writable


def agent_cgroup(harness) -> Path:
    agent_id = (harness.data_dir / "agent-id").read_text().strip()
    return cgroup2_mount() / own_cgroup().lstrip("/") / f"dynomesh-{agent_id}"


@pytest.mark.skipif(not cgroups_writable(), reason="no writable cgroup v2")
def test_a_stopped_dynos_cgroup_is_removed_even_while_its_process_is_still_leaving_it(harness):
    slug = harness.slugs.make("worker: python heavy.py\n")
    harness.write(harness.dyno("worker.1", slug, memory_mb=4096))
    agent = harness.start(flags={"--marker": "cgroup"})
    agent.wait_for(r"app\[worker\.1\]: heavy worker up", timeout=60)
    (dyno_cgroup,) = [p for p in agent_cgroup(harness).iterdir() if p.is_dir()]
    mark = agent.mark()
    harness.write()
    agent.signal(signal.SIGHUP)
    agent.wait_line(r"heroku\[worker\.1\]: State changed from stopping to down", after=mark)
    agent.wait_until(lambda: not dyno_cgroup.exists(), what="the dyno's cgroup removed")
    print("\n".join(agent.out[mark:]))
    assert agent.count(r"cannot remove cgroup", after=mark) == 0
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit() == 0
    assert not agent_cgroup(harness).exists()
