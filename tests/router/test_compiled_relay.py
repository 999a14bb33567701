"""The compiled request path and its pure-Python twins relay the same bytes (router/compiled.py).

The suite runs on one of them per process; here two `dynomesh router` processes, one on each,
get the same pipelined requests — plain, HEAD, a body of known length, a chunked body with a
trailer, then one for an unknown host that ends the connection — and must answer alike, to the
byte, and send the dyno the same requests. And `DYNOMESH_PURE_PYTHON=1` reaches a fresh process.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from router import compiled
from tests.conftest import REPO_ROOT, dynomesh_argv, dynomesh_env
from tests.router.wire import RawClient

pytestmark = pytest.mark.functional

REQUESTS = (
    b"GET /a?b=1 HTTP/1.1\r\nHost: app1.localhost\r\nUser-Agent: t\r\n\r\n"
    b"HEAD /h HTTP/1.1\r\nHost: app1.localhost\r\n\r\n"
    b"POST /p HTTP/1.1\r\nHost: app1.localhost\r\nContent-Length: 5\r\n\r\nhello"
    b"POST /c HTTP/1.1\r\nHost: app1.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"
    b"GET / HTTP/1.1\r\nHost: nowhere.localhost\r\n\r\n")
# What differs from one process to the next: request ids, start times, the listening port.
VARYING = re.compile(rb"(X-Request-Id: |X-Request-Start: |X-Forwarded-Port: )[^\r\n]+", re.I)


async def relay(routes: str, pure: bool, dyno) -> tuple[bytes, list[bytes]]:
    env = dynomesh_env()
    env.pop(compiled.PURE_ENV, None)
    if pure:
        env[compiled.PURE_ENV] = "1"
    process = await asyncio.create_subprocess_exec(
        *dynomesh_argv("router", "--listen", "127.0.0.1:0", "--admin", "off", "--routes", routes),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            ready = (await process.stderr.readline()).decode()
            port = int(re.search(r"ready on http://127\.0\.0\.1:(\d+)", ready).group(1))
            assert ("pure Python" in ready) == pure, ready
            client = await RawClient.connect(port)
            before = len(dyno.requests)
            await client.send(REQUESTS)
            answered = await client.reader.read()  # to the end: the last answer closes
            await client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.communicate()
    seen = [VARYING.sub(rb"\1-", request.raw_head + request.body + repr(request.trailers).encode())
            for request in dyno.requests[before:]]
    return VARYING.sub(rb"\1-", answered), seen


async def test_the_compiled_router_and_its_twins_relay_the_same_bytes(dyno_factory, tmp_path):
    package = Path(compiled.__file__).parent
    if not any((package / ("client" + suffix)).exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES):
        pytest.skip("this install has no compiled build to compare with its twins")
    dyno = await dyno_factory()
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"apps": [{"name": "app1", "hosts": ["app1.localhost"],
                                            "dynos": [{"name": "web.1",
                                                       "address": dyno.address}]}]}))
    compiled_answer, compiled_seen = await relay(str(routes), False, dyno)
    pure_answer, pure_seen = await relay(str(routes), True, dyno)
    assert compiled_answer.count(b"HTTP/1.1 ") == 5  # four relayed answers and the 404
    assert b"404" in compiled_answer and len(compiled_seen) == 4
    assert compiled_answer == pure_answer
    assert compiled_seen == pure_seen


def test_the_environment_switch_reaches_a_fresh_process():
    script = "import router.headers as h, router.compiled as c; print(h.__file__); print(c.hot_path())"
    env = {"PATH": "/usr/bin:/bin", "DYNOMESH_PURE_PYTHON": "1", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    assert out[0].endswith("router/headers.py")
    assert out[1] == "hot path pure Python (DYNOMESH_PURE_PYTHON is set)"
