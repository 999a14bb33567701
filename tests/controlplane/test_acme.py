"""Automatic certificates against a real ACME server: Pebble on loopback validates HTTP-01 by
fetching the challenge from a real `dynomesh router` process that follows this control node's
route feed; the control node's own certificate loop (controlplane/acme/manager.py) obtains,
stores, renews and reports (`pending`, `issued`, `failed: <the CA's reason>`)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import subprocess

import pytest

from controlplane.acme.policy import RenewalPolicy
from controlplane.acme.settings import AcmeSettings
from controlplane.store.models import Role
from tests import pebble
from tests.conftest import dynomesh_argv, dynomesh_env, free_port
from tests.e2e.harness import ProcessLines

# Without Pebble these skip, saying so; under .ci/run (DYNOMESH_CI), which installs it, they fail.
pytestmark = [pytest.mark.skipif(not pebble.available() and not os.environ.get("DYNOMESH_CI"),
                                 reason="needs Debian's pebble (apt-get install pebble); "
                                        ".ci/run installs it"),
              pytest.mark.timeout(120)]

# Pebble issues certificates valid this long; the loop renews them `RENEW_BEFORE` earlier, so
# a certificate is due for renewal a few seconds after it was issued.
VALIDITY = 3600
RENEW_BEFORE = VALIDITY - 3


def cli(api, *args: str) -> str:
    """The real `dynomesh` command against the in-process control node."""
    done = subprocess.run(dynomesh_argv(*args), capture_output=True, text=True, timeout=60,
                          env=dynomesh_env(DYNOMESH_API=api.url,
                                           DYNOMESH_TOKEN=api.tokens[Role.USER]))
    assert done.returncode == 0, done.stderr
    return done.stdout


def https_get(port: int, host: str, root_pem: str) -> tuple[dict, bytes]:
    """(the served certificate, verified for `host`; the response's first bytes)."""
    import socket

    context = ssl.create_default_context(cadata=root_pem)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        served = tls.getpeercert()
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = tls.recv(64)
    return served, answer


async def until(predicate, what: str, timeout: float = 60.0):
    """Bounded polling of real state (the loop's outcome is in the store)."""
    async with asyncio.timeout(timeout):
        while not (found := await predicate()):
            await asyncio.sleep(0.1)
    return found


@pytest.fixture
async def platform(node_factory, tmp_path):
    """A control node (on SQLite, then PostgreSQL, where it also counts other nodes' routers)
    with the ACME loop pointed at Pebble, and a router process following it; Pebble validates
    on the router's plain listener."""
    http_port, https_port = free_port(), free_port()
    with pebble.serve(http_port, validity=VALIDITY) as ca:
        key_file = tmp_path / "certificate.key"
        key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        api = await node_factory(certificate_key_file=key_file, acme=AcmeSettings(
            directory_url=ca.directory_url, ca_file=ca.ca_file,
            policy=RenewalPolicy(renew_before=RENEW_BEFORE)))
        token_file = tmp_path / "router.token"
        token_file.write_text(api.tokens[Role.ROUTER] + "\n")
        router = ProcessLines(dynomesh_argv(
            "router", "--listen", f"127.0.0.1:{http_port}", "--listen-tls",
            f"127.0.0.1:{https_port}", "--admin", f"127.0.0.1:{free_port()}",
            "--control", api.url, "--token-file", str(token_file)), dynomesh_env(), name="router")
        try:
            await asyncio.to_thread(router.wait_for, r"^dynomesh router: ready on ")
            router.https_port = https_port
            yield api, ca, router
        finally:
            await asyncio.to_thread(router.stop)


async def test_a_certificate_is_issued_through_the_router_renewed_and_a_refusal_shown(platform):
    api, ca, router = platform
    await api.call("POST", "/apps", json={"name": "shop"})
    for host in ("shop.example.test", "gone.example.test", "*.example.test"):
        await api.call("POST", "/apps/shop/domains", json={"hostname": host})
    # gone.example.test's DNS points where nothing listens: the CA cannot reach the router.
    ca.point("gone.example.test", "127.0.0.2")

    status, acm, _ = await api.call("GET", "/apps/shop/acm")
    assert status == 200 and acm["enabled"] is False and acm["domains"] == []
    status, acm, _ = await api.call("POST", "/apps/shop/acm")
    assert status == 200 and acm["enabled"] is True
    # Wildcards are not managed (HTTP-01 cannot prove them); the others start pending.
    assert [(d["hostname"], d["status"]) for d in acm["domains"]] == [
        ("gone.example.test", "pending"), ("shop.example.test", "pending")]

    async def settled():
        _, acm, _ = await api.call("GET", "/apps/shop/acm")
        by_host = {d["hostname"]: d for d in acm["domains"]}
        done = all(d["status"] != "pending" for d in by_host.values())
        return by_host if done else None

    domains = await until(settled, "both domains attempted")
    assert domains["shop.example.test"]["status"] == "issued"
    assert domains["shop.example.test"]["expires_at"]
    gone = domains["gone.example.test"]
    assert gone["status"] == "failed" and gone["next_attempt_at"]
    # The CA's own problem: its type and detail (Pebble could not connect to 127.0.0.2).
    assert gone["reason"].startswith("connection: ") and "127.0.0.2" in gone["reason"], gone

    # The router answered the challenge itself (the app has no release, no dynos); its log
    # lines are written every quarter second.
    await asyncio.to_thread(
        router.wait_for, r'desc="ACME challenge answered".*host=shop\.example\.test.*status=200',
        timeout=10)

    # The certificate is stored through the certificate service: listed, key never shown.
    _, certs, _ = await api.call("GET", "/apps/shop/certs")
    (cert,) = certs
    assert (cert["source"], cert["domain"], cert["names"]) == ("auto", "shop.example.test",
                                                               ["shop.example.test"])
    assert "key" not in cert and "Pebble" in cert["issuer"]

    # `dynomesh certs` shows the certificate and each domain's status, with the CA's reason.
    shown = await asyncio.to_thread(cli, api, "certs", "--app", "shop")
    assert "auto" in shown and "Automatic certificates are on for shop:" in shown
    assert "gone.example.test  failed: connection: " in shown, shown
    assert "shop.example.test  issued" in shown, shown
    listed = json.loads(await asyncio.to_thread(cli, api, "certs", "--app", "shop", "--json"))
    # (Each certificate is due again 3 s after issue, so the one listed may be a renewal.)
    assert [(c["source"], c["domain"]) for c in listed["certificates"]] == [
        ("auto", "shop.example.test")]
    assert {d["hostname"]: d["status"] for d in listed["auto"]["domains"]} == {
        "gone.example.test": "failed", "shop.example.test": "issued"}

    # HTTPS: the router serves the issued certificate by SNI, which verifies up to Pebble's
    # root (made anew by this Pebble) for that name; nothing is deployed, so the answer is H81.
    served, answer = await asyncio.to_thread(https_get, router.https_port, "shop.example.test",
                                             ca.root_pem())
    assert served["subjectAltName"] == (("DNS", "shop.example.test"),)
    assert answer.startswith(b"HTTP/1.1 502 "), answer

    # Renewal: this certificate is due 3 s after issue; the loop replaces it with a new one.
    async def renewed():
        _, now, _ = await api.call("GET", "/apps/shop/certs")
        return now if now and now[0]["fingerprint"] != cert["fingerprint"] else None

    (renewal,) = await until(renewed, "the renewed certificate")
    assert renewal["domain"] == "shop.example.test" and renewal["not_after"] > cert["not_after"]

    # Turned off: the state per domain goes; issued certificates stay.
    status, acm, _ = await api.call("DELETE", "/apps/shop/acm")
    assert status == 200 and acm == {"app": acm["app"], "enabled": False, "domains": []}
    _, certs, _ = await api.call("GET", "/apps/shop/certs")
    assert [c["source"] for c in certs] == ["auto"]


async def test_enabling_without_a_certificate_key_is_refused_saying_what_to_do(api_factory):
    api = await api_factory()  # no --certificate-key-file
    await api.call("POST", "/apps", json={"name": "shop"})
    status, body, _ = await api.call("POST", "/apps/shop/acm")
    assert status == 503 and body["id"] == "certificates_not_configured"
    assert "--certificate-key-file" in body["message"]
    assert (await api.call("GET", "/apps/shop/acm"))[1]["enabled"] is False
