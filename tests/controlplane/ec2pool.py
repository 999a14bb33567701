"""EC2 on loopback for the pool's tests: a real `moto_server` process speaking the AWS protocol,
and a player that plays each instance the pool launches.

moto starts no VMs, so `VmPlayer` does what an instance's first boot would: it reads the
instance's user-data back from EC2 (DescribeInstanceAttribute), writes the token it holds to
a file and runs the start script the user-data installs, with the same arguments; only what
is local to a machine comes after them (data dir, admin port, address, a port range of its
own, which the script's `"$@"` lets win). When EC2 reports the instance terminated, the
player stops the agent as the instance's shutdown would (SIGTERM: it drains its dynos).

    moto = MotoServer(port).start()       # ready once it says it is running
    player = VmPlayer(api.store, moto.client, tmp_path); task = player.start()
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aioboto3
import aiohttp

from controlplane.pool.userdata import HEADER, SCRIPT_PATH, TOKEN_PATH
from controlplane.store import Store
from controlplane.store.pool import PoolVmState
from tests.conftest import dynomesh_env, free_port
from tests.e2e.harness import dyno_processes

REGION = "us-east-1"
START_TIMEOUT = 60.0
# Fast agent timings, as tests/dynomgr uses (the script's arguments come first; these win).
FAST = ("--boot-timeout", "20", "--stop-timeout", "2", "--restart-base", "0.2",
        "--restart-cap", "1", "--restart-jitter", "0", "--no-cycling")
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGION}


def written_files(user_data: str) -> dict[str, str]:
    """path -> content of what a VM's cloud-config user-data writes, as cloud-init reads it."""
    if not user_data.startswith(HEADER):
        raise ValueError("not dynomesh user-data: it does not start with #cloud-config")
    config = json.loads(user_data[len(HEADER):])
    return {entry["path"]: entry["content"] for entry in config["write_files"]}


class MotoServer:
    """`moto_server` on a loopback port, AMI and instance-type validation on (so a bad AMI or
    type fails as on AWS)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.log: list[str] = []
        self._ami: str | None = None

    def start(self) -> "MotoServer":
        env = dict(os.environ, MOTO_ENABLE_AMI_VALIDATION="true",
                   MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true", **AWS_ENV)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError("moto_server did not start:\n" + "\n".join(self.log))
        return self

    def _read(self, ready: threading.Event) -> None:
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            if "Running on" in line:
                ready.set()
        ready.set()  # ended: start() checks the process

    async def reset(self) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.url}/moto-api/reset") as response:
                assert response.status == 200, await response.text()

    def client(self):
        """An EC2 client on this server (use with `async with`)."""
        return aioboto3.Session(region_name=REGION, aws_access_key_id="testing",
                                aws_secret_access_key="testing").client(
            "ec2", endpoint_url=self.url)

    async def instances(self) -> list[dict]:
        async with self.client() as ec2:
            answer = await ec2.describe_instances()
        return [i for r in answer["Reservations"] for i in r["Instances"]]

    async def an_ami(self) -> str:
        """One of moto's stock AMIs (they survive a reset; listing them is slow, so once)."""
        if self._ami is None:
            async with self.client() as ec2:
                images = (await ec2.describe_images(Owners=["amazon"]))["Images"]
            self._ami = sorted(image["ImageId"] for image in images)[0]
        return self._ami

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


async def until(store: Store, check: Callable, what: str, timeout: float = 60.0):
    """Wait until `await check()` is truthy, looking again at each new store revision (and
    at least every 0.5 s, for what changes without one); returns its value."""
    deadline = time.monotonic() + timeout
    signal_ = store.db.signal
    while True:
        seen = signal_.revision
        value = await check()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        try:
            await asyncio.wait_for(signal_.wait_beyond(seen), min(left, 0.5))
        except asyncio.TimeoutError:
            pass


@dataclass
class PlayedVm:
    vm_id: str
    instance_id: str
    process: subprocess.Popen
    port_range: tuple[int, int]
    user_data: str
    argv: list[str]
    started_at: float
    log: Path


@dataclass
class VmPlayer:
    """Plays every instance the pool launches, and ends it when EC2 says it is terminated."""

    store: Store
    moto: MotoServer
    root: Path
    played: dict[str, PlayedVm] = field(default_factory=dict)
    on_terminated: Callable[[PlayedVm], object] | None = None  # awaited before the stop
    _next_port: int = 30000
    _task: asyncio.Task | None = None

    def start(self) -> "VmPlayer":
        self._task = asyncio.create_task(self._run(), name="vm-player")
        return self

    async def _run(self) -> None:
        signal_ = self.store.db.signal
        while True:
            seen = signal_.revision
            await self._step()
            try:
                await asyncio.wait_for(signal_.wait_beyond(seen), 1.0)
            except asyncio.TimeoutError:
                pass

    async def _step(self) -> None:
        rows = {row.vm_id: row for row in (await self.store.pool.snapshot()).pool}
        for row in rows.values():
            if row.instance_id and row.vm_id not in self.played \
                    and row.state is PoolVmState.LAUNCHING:
                await self.boot(row.vm_id, row.instance_id)
        for vm_id, vm in list(self.played.items()):
            row = rows.get(vm_id)
            if vm.process.poll() is None and (row is None or
                                              row.state is PoolVmState.TERMINATING):
                if await self._terminated(vm.instance_id):
                    await self.shut_down(vm)

    async def _terminated(self, instance_id: str) -> bool:
        async with self.moto.client() as ec2:
            answer = await ec2.describe_instances(InstanceIds=[instance_id])
        states = [i["State"]["Name"] for r in answer["Reservations"] for i in r["Instances"]]
        return bool(states) and states[0] in ("shutting-down", "terminated")

    async def boot(self, vm_id: str, instance_id: str) -> PlayedVm:
        async with self.moto.client() as ec2:
            answer = await ec2.describe_instance_attribute(InstanceId=instance_id,
                                                           Attribute="userData")
        user_data = base64.b64decode(answer["UserData"]["Value"]).decode()
        files = written_files(user_data)
        home = self.root / vm_id
        home.mkdir(parents=True)
        token_file = home / "dynomgr.token"
        token_file.write_text(files[TOKEN_PATH])
        script = home / "dynomesh-vm"
        script.write_text(files[SCRIPT_PATH])
        low = self._next_port
        self._next_port += 1000
        ports = (low, low + 999)
        argv = ["sh", str(script), "--token-file", str(token_file), "--data-dir",
                str(home / "data"), "--admin", f"127.0.0.1:{free_port()}",
                "--address", "127.0.0.1", "--port-range", f"{ports[0]}-{ports[1]}", *FAST]
        env = dynomesh_env(PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
        log = home / "agent.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        played = PlayedVm(vm_id, instance_id, process, ports, user_data, argv, time.time(), log)
        self.played[vm_id] = played
        return played

    async def shut_down(self, vm: PlayedVm) -> None:
        if self.on_terminated is not None:
            await self.on_terminated(vm)
        vm.process.send_signal(signal.SIGTERM)  # an instance's shutdown stops the unit
        await asyncio.to_thread(vm.process.wait, 60)

    def kill(self, vm: PlayedVm) -> None:
        """The VM dies: its agent and its dynos at once."""
        os.killpg(vm.process.pid, signal.SIGKILL)
        vm.process.wait(timeout=30)
        for pid in dyno_processes(vm.log.parent / "data"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for vm in self.played.values():
            if vm.process.poll() is None:
                vm.process.send_signal(signal.SIGTERM)
        # One deadline for all of them (a test's teardown has the test's time limit): an agent
        # still stopping then is killed with its dynos, as when its VM dies.
        deadline = asyncio.get_running_loop().time() + 20.0
        for vm in self.played.values():
            left = max(0.1, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.to_thread(vm.process.wait, left)
            except subprocess.TimeoutExpired:
                self.kill(vm)

    def in_range(self, vm_id: str, address: str) -> bool:
        low, high = self.played[vm_id].port_range
        return low <= int(address.rsplit(":", 1)[1]) <= high


class ThrottlingProxy:
    """A real HTTP proxy on loopback in front of moto that answers the first `fail` calls of
    one EC2 action with an AWS error (as EC2 words it), and passes everything else on."""

    def __init__(self, moto: MotoServer, action: str, code: str, fail: int) -> None:
        self.moto = moto
        self.action = action
        self.code = code
        self.left = fail
        self.answered: list[str] = []  # the action of each call, in order, "!" when failed
        self.url = ""
        self._runner = None

    async def start(self) -> "ThrottlingProxy":
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _handle(self, request):
        from urllib.parse import parse_qs

        from aiohttp import web

        body = await request.read()
        action = parse_qs(body.decode()).get("Action", [""])[0]
        if action == self.action and self.left > 0:
            self.left -= 1
            self.answered.append("!" + action)
            return web.Response(status=503, content_type="text/xml", text=(
                f"<Response><Errors><Error><Code>{self.code}</Code><Message>Request limit "
                f"exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>"))
        self.answered.append(action)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, self.moto.url + request.path_qs,
                                       data=body, headers=headers) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    content_type=answer.content_type)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
