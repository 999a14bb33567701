"""Pebble, Let's Encrypt's ACME test server (Debian's `pebble`), on loopback for the ACME tests.

Pebble validates HTTP-01 challenges for real: it resolves the domain and fetches
`http://<domain>:<http_port>/.well-known/acme-challenge/<token>`. Its resolver is
`pebble-challtestsrv`'s DNS server (shipped with it), which answers every A query with 127.0.0.1
(and a test may point one name elsewhere, `point`), and `http_port` is the router's plain
listener: so the router under test is what answers the challenge.

Its own HTTPS certificate comes from a trustme CA made here (`ca_file`: what the control plane's
`--acme-ca-file` trusts). Validation runs without Pebble's random sleeps (PEBBLE_VA_NOSLEEP) and
without reusing earlier authorizations (PEBBLE_AUTHZREUSE=0), so every order is validated
through the router. Pebble still refuses 5% of good nonces, which the client must survive.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

STARTUP_LINES = 200  # each server logs a dozen lines before it is ready


@dataclass
class Pebble:
    directory_url: str
    ca_file: str  # trusts Pebble's HTTPS listener
    management_url: str
    challtestsrv_url: str
    http_port: int

    def root_pem(self) -> str:
        """The root of the chains Pebble issues (made anew at each start)."""
        return self._get(f"{self.management_url}/roots/0")

    def point(self, host: str, address: str) -> None:
        """Answer A queries for `host` with `address` (e.g. where nothing listens)."""
        body = json.dumps({"host": host.rstrip(".") + ".", "addresses": [address]}).encode()
        urllib.request.urlopen(urllib.request.Request(
            f"{self.challtestsrv_url}/add-a", data=body, method="POST"), timeout=10).read()

    def _get(self, url: str) -> str:
        import ssl

        context = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return response.read().decode()


def available() -> bool:
    return shutil.which("pebble") is not None and shutil.which("pebble-challtestsrv") is not None


@contextlib.contextmanager
def serve(http_port: int, *, validity: int | None = None) -> Iterator[Pebble]:
    """Pebble and its DNS server, validating HTTP-01 on 127.0.0.1:`http_port`. `validity`:
    seconds each issued certificate is valid (Pebble's default is five years)."""
    import trustme

    with tempfile.TemporaryDirectory(prefix="pebble-") as tmp:
        work = Path(tmp)
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(work / "ca.pem"))
        leaf.private_key_pem.write_to_path(str(work / "key.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
        acme_port, management_port, dns_port, dns_admin_port = (free_port() for _ in range(4))
        config = {"listenAddress": f"127.0.0.1:{acme_port}",
                  "managementListenAddress": f"127.0.0.1:{management_port}",
                  "certificate": str(work / "cert.pem"), "privateKey": str(work / "key.pem"),
                  "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
                  "externalAccountBindingRequired": False}
        if validity is not None:
            config["certificateValidityPeriod"] = validity
        (work / "pebble.json").write_text(json.dumps({"pebble": config}))
        dns = subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-http01", "",
             "-https01", "", "-tlsalpn01", "", "-defaultIPv6", "",
             "-management", f"127.0.0.1:{dns_admin_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_AUTHZREUSE="0")
        pebble = None
        try:
            _wait_for_line(dns, "Starting management server")
            pebble = subprocess.Popen(
                ["pebble", "-config", str(work / "pebble.json"), "-dnsserver",
                 f"127.0.0.1:{dns_port}"], cwd=work, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            _wait_for_line(pebble, "ACME directory available")
            yield Pebble(f"https://127.0.0.1:{acme_port}/dir", str(work / "ca.pem"),
                         f"https://127.0.0.1:{management_port}",
                         f"http://127.0.0.1:{dns_admin_port}", http_port)
        finally:
            for process in (pebble, dns):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=10)


def _wait_for_line(process: subprocess.Popen, text: str) -> None:
    """Read the server's output until it says `text` (it is ready), or fail with what it said."""
    seen = []
    for _ in range(STARTUP_LINES):
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            # Keep draining its output so a full pipe never blocks it.
            _drain(process)
            return
    raise RuntimeError(f"{process.args[0]} did not start:\n{''.join(seen)}")


def _drain(process: subprocess.Popen) -> None:
    import threading

    def drain() -> None:
        with process.stdout:
            for _ in process.stdout:
                pass

    threading.Thread(target=drain, daemon=True).start()
