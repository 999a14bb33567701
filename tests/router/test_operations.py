"""The real `dynomesh router` process: SIGHUP reload, SIGTERM drain, --workers N."""

import asyncio
import json
import re
import signal
import subprocess

import aiohttp
import pytest

from tests.conftest import dynomesh_argv, dynomesh_env
from tests.router.wire import RawClient, build_request, read_response, response_bytes


def routes_for(*dynos) -> dict:
    return {"apps": [{"name": "app1", "hosts": ["app1.localhost"],
                      "dynos": [{"name": d.name, "address": d.address} for d in dynos]}]}


class RouterProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.port = 0
        self.admin_port = 0
        self.stderr: list[str] = []

    @classmethod
    async def start(cls, routes_path, *flags: str) -> "RouterProcess":
        process = await asyncio.create_subprocess_exec(
            *dynomesh_argv("router", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                           "--routes", str(routes_path), *flags),
            env=dynomesh_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        router = cls(process)
        ready = await router.line(r"^dynomesh router: ready on http://127\.0\.0\.1:(\d+) .* "
                                  r"admin on http://127\.0\.0\.1:(\d+)")
        router.port, router.admin_port = int(ready.group(1)), int(ready.group(2))
        return router

    async def line(self, pattern: str, timeout: float = 30) -> re.Match:
        """Read status lines until one matches (what the router prints when it is done)."""
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stderr.readline()
                assert raw, f"router exited; it said: {self.stderr}"
                text = raw.decode().rstrip("\n")
                self.stderr.append(text)
                match = re.search(pattern, text)
                if match:
                    return match

    async def finish(self) -> tuple[int, str]:
        async with asyncio.timeout(60):
            out, err = await self.process.communicate()
        self.stderr += err.decode().splitlines()
        return self.process.returncode, out.decode()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


@pytest.fixture
async def router_process():
    started: list[RouterProcess] = []

    async def start(routes_path, *flags):
        router = await RouterProcess.start(routes_path, *flags)
        started.append(router)
        return router

    yield start
    for router in started:
        router.kill()
        await router.process.wait()


async def test_sighup_reloads_the_routes_without_dropping_a_connection(dyno_factory, tmp_path,
                                                                      router_process):
    old, new = await dyno_factory("web.1"), await dyno_factory("web.2")
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(routes_for(old)))
    router = await router_process(routes)
    client = await RawClient.connect(router.port)
    assert (await client.request(host="app1.localhost")).body == b"web.1 / "
    routes.write_text(json.dumps(routes_for(new)))
    router.process.send_signal(signal.SIGHUP)
    await router.line(r"reloaded 1 apps from")
    assert (await client.request(host="app1.localhost")).body == b"web.2 / "  # same connection
    routes.write_text('{"apps": [{"name": "app1"}]}')
    router.process.send_signal(signal.SIGHUP)
    refused = await router.line(r"reload refused, keeping the current table: .*")
    assert "apps[0].hosts: missing" in refused.group(0)
    assert (await client.request(host="app1.localhost")).body == b"web.2 / "
    await client.close()
    router.process.send_signal(signal.SIGTERM)
    code, _ = await router.finish()
    assert code == 0


async def test_sigterm_drains_requests_in_flight_then_exits_0(dyno_factory, tmp_path,
                                                            router_process):
    release = asyncio.Event()

    async def slow(dyno, reader, writer):
        await dyno.next_request(reader)
        await release.wait()
        writer.write(response_bytes(body=b"finished"))
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=slow)
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(routes_for(dyno)))
    router = await router_process(routes)
    busy = await RawClient.connect(router.port)
    idle = await RawClient.connect(router.port)
    await busy.send(build_request(host="app1.localhost"))
    await dyno.wait_requests(1)
    router.process.send_signal(signal.SIGTERM)
    await router.line(r"draining")
    assert await idle.closed()  # nothing in progress there: closed at once
    with pytest.raises(OSError):
        await RawClient.connect(router.port)  # no longer accepting
    release.set()
    response = await read_response(busy.reader)
    assert response.status == 200 and response.body == b"finished"
    assert response.get("Connection") == b"close" and await busy.closed()
    await busy.close()
    code, out = await router.finish()
    assert code == 0 and "dynomesh router: stopped" in router.stderr
    assert "status=200" in out


async def test_the_drain_ends_at_the_drain_timeout(dyno_factory, tmp_path, router_process):
    async def never(dyno, reader, writer):
        await dyno.next_request(reader)
        await reader.read()

    dyno = await dyno_factory(handler=never)
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(routes_for(dyno)))
    router = await router_process(routes, "--drain-timeout", "0.3")
    client = await RawClient.connect(router.port)
    await client.send(build_request(host="app1.localhost"))
    await dyno.wait_requests(1)
    router.process.send_signal(signal.SIGTERM)
    await router.line(r"drain ended with 1 connections still open")
    code, _ = await router.finish()
    assert code == 0
    assert await client.closed()


async def test_workers_share_one_port_and_report_metrics_together(dyno_factory, tmp_path,
                                                                 router_process):
    dyno = await dyno_factory()
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(routes_for(dyno)))
    router = await router_process(routes, "--workers", "2")
    assert any("worker 1" in line for line in router.stderr)
    assert any("worker 2" in line for line in router.stderr)
    requests = 40
    for _ in range(requests):  # new connections: the kernel spreads them over the workers
        client = await RawClient.connect(router.port)
        assert (await client.request(host="app1.localhost")).status == 200
        await client.close()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{router.admin_port}/metrics") as reply:
            text = await reply.text()
        async with session.get(f"http://127.0.0.1:{router.admin_port}/readyz") as reply:
            assert reply.status == 200 and "2 workers" in await reply.text()
    lines = set(text.splitlines())
    assert f'dynomesh_router_requests_total{{app="app1",code="",status="200"}} {requests}.0' \
        in lines
    per_worker = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'dynomesh_router_worker_requests_total\{worker="(\d)"\} (\S+)', text)}
    assert set(per_worker) == {"1", "2"} and sum(per_worker.values()) == requests
    assert all(count > 0 for count in per_worker.values())  # both workers served
    assert "dynomesh_router_workers 2.0" in lines
    assert "dynomesh_router_routes_apps 1.0" in lines  # the table's facts are not summed
    router.process.send_signal(signal.SIGHUP)  # passed on: every worker reloads
    reloaded = {(await router.line(r"router\[worker (\d)\]: reloaded 1 apps")).group(1)
                for _ in range(2)}
    assert reloaded == {"1", "2"}
    router.process.send_signal(signal.SIGTERM)
    code, out = await router.finish()
    assert code == 0 and "dynomesh router: stopped" in router.stderr
    log_lines = out.splitlines()
    assert len(log_lines) == requests  # every line whole: none interleaved
    assert all(re.match(r"\S+ heroku\[router\]: at=info method=GET .* status=200 ", line)
               for line in log_lines)
