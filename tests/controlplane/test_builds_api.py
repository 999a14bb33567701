"""The builds API in-process: a source in, its output streamed, a release out; a build that a
crash interrupted is failed when the control plane starts again."""

from __future__ import annotations

import asyncio

from controlplane.store.models import BuildStatus, Role
from tests.controlplane.conftest import HELLO_SLUG, checksum, slug_bytes


async def _upload(api, app: str, files=HELLO_SLUG, **headers):
    data = slug_bytes(files)
    return await api.call("POST", f"/apps/{app}/builds", data=data,
                          headers={"X-Slug-Checksum": checksum(data), **headers})


async def test_a_source_is_built_its_output_streamed_and_released(api_factory, tmp_path):
    api = await api_factory(builds_dir=tmp_path / "builds")
    await api.call("POST", "/apps", json={"name": "hello"})
    status, build, _ = await _upload(api, "hello")
    assert status == 201, build
    assert build["number"] == 1 and build["source_checksum"] == checksum(slug_bytes(HELLO_SLUG))
    status, _, response = await api.call("GET", "/apps/hello/builds/1/output")
    assert status == 200
    text = await response.text()
    assert text.splitlines()[0].startswith("-----> No buildpack detected")
    assert text.splitlines()[-1] == "-----> Releasing"
    status, build, _ = await api.call("GET", f"/apps/hello/builds/{build['id']}")
    assert build["status"] == "succeeded" and build["release"] == {"version": 1}
    assert build["buildpack"] is None and build["reason"] is None
    _, releases, _ = await api.call("GET", "/apps/hello/releases")
    assert [(r["version"], r["status"], r["current"]) for r in releases] == [(1, "succeeded",
                                                                             True)]
    await asyncio.to_thread(api.node.applog.flush)  # the log is written from a thread
    assert any("Release v1 created by" in line for line in api.log_lines())
    # Kept: the same output again after the build ended.
    _, _, response = await api.call("GET", "/apps/hello/builds/1/output")
    assert await response.text() == text
    _, listed, _ = await api.call("GET", "/apps/hello/builds")
    assert [b["number"] for b in listed] == [1]


async def test_a_damaged_upload_or_an_unknown_app_starts_no_build(api_factory, tmp_path):
    api = await api_factory(builds_dir=tmp_path / "builds")
    await api.call("POST", "/apps", json={"name": "hello"})
    status, body, _ = await _upload(api, "hello", **{"X-Slug-Checksum": "sha256:" + "0" * 64})
    assert status == 422 and body["id"] == "checksum_mismatch"
    status, body, _ = await _upload(api, "nosuchapp")
    assert status == 404
    _, listed, _ = await api.call("GET", "/apps/hello/builds")
    assert listed == []
    assert list((tmp_path / "builds" / "incoming").iterdir()) == []


async def test_a_build_left_pending_by_a_crash_is_failed_when_a_node_starts(node_factory,
                                                                            tmp_path):
    api = await node_factory(builds_dir=tmp_path / "builds")
    app = await api.store.apps.create("hello")
    orphan = await api.store.builds.start(app.id, source_checksum="sha256:" + "1" * 64,
                                          node="node-that-crashed")
    again = await node_factory(builds_dir=tmp_path / "builds2")
    build = await again.store.builds.get(app.id, str(orphan.number))
    assert build.status is BuildStatus.FAILED
    assert build.reason.startswith("interrupted: the control plane stopped during the build")
    assert await again.store.releases.list(app.id) == []


async def test_a_vms_stack_is_kept_from_its_registration_and_a_bad_one_refused(api):
    vm = {"address": "10.0.0.5", "capacity_mb": 1024, "ports": [20000, 20100],
          "version": "0.1.0",
          "stack": {"interpreters": [{"version": "3.11.2", "path": "/usr/bin/python3.11"}]}}
    status, body, _ = await api.call("PUT", "/vms/vm-1", json=vm, role=Role.DYNOMGR)
    assert status == 200, body
    _, listed, _ = await api.call("GET", "/vms")
    assert listed[0]["stack"] == vm["stack"]
    bad = {**vm, "stack": {"interpreters": [{"version": "eleven", "path": "python"}]}}
    status, body, _ = await api.call("PUT", "/vms/vm-1", json=bad, role=Role.DYNOMGR)
    assert status == 422 and "stack.interpreters" in body["message"]
