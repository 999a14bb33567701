"""examples/hello runs as a dyno would: on $PORT, showing $DYNO and $GREETING, stopping on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

from tests.conftest import REPO_ROOT, free_port

HELLO = REPO_ROOT / "examples" / "hello"


def test_hello_web_answers_on_port_with_dyno_and_greeting_and_stops_on_sigterm():
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DYNO": "web.2", "GREETING": "Howdy",
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "web.py"], cwd=HELLO, env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == f"web.2 listening on port {port}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.read().decode() == "Howdy from web.2\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_hello_procfile_names_web_and_worker():
    from controlplane import procfile

    assert set(procfile.parse((HELLO / "Procfile").read_text())) == {"web", "worker"}
