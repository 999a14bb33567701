"""The TLS listener: certificates from route entries chosen by SNI, hot changes, bad handshakes.

Certificates come from a throwaway CA (trustme) made per module; the clients are Python's `ssl`
(asyncio streams) and curl.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import signal
import ssl
import subprocess
import urllib.request

import pytest
import trustme
from cryptography import x509

from router.accesslog import MemorySink
from router.config import Endpoint, RouterConfig
from router.routes import parse_certificate
from router.server import Router
from tests.certificates import issue, key_lines
from tests.conftest import dynomesh_argv, dynomesh_env
from tests.router.conftest import app_entry, table_of, wait_until
from tests.router.wire import RawClient, build_request, read_response

pytestmark = pytest.mark.functional
TLS = Endpoint("127.0.0.1", 0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.ECDSA)


def cert_entry(ca: trustme.CA, *names: str) -> dict[str, str]:
    """A route entry's certificate: PEM chain (leaf first) and key, as the feed carries it."""
    return issue(ca, *names)


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def handshake(port: int, server_name: str | None, context: ssl.SSLContext):
    """-> (the certificate the router presented, reader, writer) after a TLS handshake."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name or "")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der), reader, writer


def dns_names(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.DNSName)


async def https_request(port: int, host: str, context: ssl.SSLContext, target: str = "/"):
    certificate, reader, writer = await handshake(port, host, context)
    try:
        writer.write(build_request("GET", target, host))
        return certificate, await read_response(reader)
    finally:
        writer.close()


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_sni_picks_the_exact_certificate_then_the_wildcard(router_factory, dyno_factory, ca):
    dyno = await dyno_factory()
    table = table_of(
        app_entry("shop", ["shop.example.com"], [dyno], certificates=[
            cert_entry(ca, "shop.example.com")]),
        app_entry("wild", ["*.apps.example.com"], [dyno], certificates=[
            cert_entry(ca, "*.apps.example.com")]),
        # An exact host under the wildcard, with its own certificate: exact wins.
        app_entry("blog", ["blog.apps.example.com"], [dyno], certificates=[
            cert_entry(ca, "blog.apps.example.com")]))
    router = await router_factory(table, listen_tls=TLS)
    context = client_context(ca)  # verifies the chain and the name: a wrong pick fails here
    for host, expected in [("shop.example.com", ["shop.example.com"]),
                           ("one.apps.example.com", ["*.apps.example.com"]),
                           ("blog.apps.example.com", ["blog.apps.example.com"])]:
        certificate, response = await https_request(router.router.tls_port, host, context)
        assert dns_names(certificate) == expected
        assert response.status == 200 and response.body == b"web.1 / "


async def test_an_unknown_or_missing_server_name_gets_the_default_certificate_and_a_404(
        router_factory, dyno_factory, ca):
    dyno = await dyno_factory()
    table = table_of(app_entry("shop", ["shop.example.com"], [dyno], certificates=[
        cert_entry(ca, "shop.example.com")]))
    router = await router_factory(table, listen_tls=TLS)
    port = router.router.tls_port
    with pytest.raises(ssl.SSLCertVerificationError):  # the default is no CA's
        await handshake(port, "nobody.example.com", client_context(ca))
    certificate, response = await https_request(port, "nobody.example.com", unverified())
    assert dns_names(certificate) == ["dynomesh-default.invalid"]
    assert response.status == 404
    certificate, _, writer = await handshake(port, None, unverified())  # no SNI at all
    writer.close()
    assert dns_names(certificate) == ["dynomesh-default.invalid"]
    # A certificate that names a host of another app is not used for it.
    assert "shop.example.com" not in dns_names(certificate)


async def test_forwarded_headers_and_the_log_line_name_the_tls_listener(
        router_factory, dyno_factory, ca):
    dyno = await dyno_factory()
    table = table_of(app_entry("shop", ["shop.example.com"], [dyno], certificates=[
        cert_entry(ca, "shop.example.com")]))
    router = await router_factory(table, listen_tls=TLS)
    _, response = await https_request(router.router.tls_port, "shop.example.com",
                                      client_context(ca))
    assert response.status == 200
    request = dyno.requests[-1]
    assert request.get("x-forwarded-proto") == b"https"
    assert request.get("x-forwarded-port") == str(router.router.tls_port).encode()
    assert router.log_fields()["protocol"] == "https"
    # The plain listener beside it still says http.
    plain = await router.client()
    assert (await plain.request(host="shop.example.com")).status == 200
    await plain.close()
    assert dyno.requests[-1].get("x-forwarded-proto") == b"http"
    assert router.log_fields()["protocol"] == "http"


async def test_a_bad_handshake_does_not_harm_a_good_connection(router_factory, dyno_factory, ca):
    dyno = await dyno_factory()
    table = table_of(app_entry("shop", ["shop.example.com"], [dyno], certificates=[
        cert_entry(ca, "shop.example.com")]))
    router = await router_factory(table, listen_tls=TLS)
    port = router.router.tls_port
    context = client_context(ca)
    _, reader, writer = await handshake(port, "shop.example.com", context)
    writer.write(build_request("GET", "/", "shop.example.com"))
    assert (await read_response(reader)).status == 200
    # Plain HTTP, random bytes, and a ClientHello cut off half-way, on the TLS port.
    for garbage in [build_request("GET", "/", "shop.example.com"), bytes(range(256)) * 4,
                    bytes.fromhex("16030100c8010000c40303") + b"\x00" * 20]:
        bad = await RawClient.connect(port)
        await bad.send(garbage)
        if garbage.startswith(b"\x16"):
            await bad.close()  # gives up mid-handshake
        else:
            assert await bad.closed()  # the router ends that connection only
    writer.write(build_request("GET", "/again", "shop.example.com"))
    assert (await read_response(reader)).status == 200
    writer.close()
    _, response = await https_request(port, "shop.example.com", context)
    assert response.status == 200


async def test_a_renewed_certificate_takes_over_during_traffic_without_a_failed_request(
        router_factory, dyno_factory, ca):
    dyno = await dyno_factory()
    first = cert_entry(ca, "shop.example.com")
    entry = app_entry("shop", ["shop.example.com"], [dyno], certificates=[first])
    router = await router_factory(table_of(entry), listen_tls=TLS)
    port = router.router.tls_port
    context = client_context(ca)
    # A keep-alive connection open across the change, and a loop of new handshakes.
    _, kept_reader, kept_writer = await handshake(port, "shop.example.com", context)
    serials: list[int] = []
    stop = asyncio.Event()

    async def loop_of_new_connections() -> int:
        done = 0
        for _ in range(500):  # bounded; stops once the new certificate was seen twice
            certificate, response = await https_request(port, "shop.example.com", context)
            assert response.status == 200
            serials.append(certificate.serial_number)
            done += 1
            if stop.is_set() and serials[-2:].count(serials[-1]) == 2 and len(set(serials)) > 1:
                break
        return done

    traffic = asyncio.create_task(loop_of_new_connections())
    await wait_until(lambda: len(serials) >= 3)
    # What a feed delta does: the app's entry replaced in place, then installed.
    renewed = parse_certificate(cert_entry(ca, "shop.example.com"), "certificates[0]")
    table = router.router.table
    table.put(dataclasses.replace(table.app("shop"), certificates=(renewed,)))
    router.router.install(table, changed=["shop"])
    stop.set()
    requests = await asyncio.wait_for(traffic, 30)
    old_serial = serials[0]
    new_serial = serials[-1]
    assert new_serial != old_serial and serials.count(new_serial) >= 2
    assert requests == len(serials)  # every request in the loop got its 200
    kept_writer.write(build_request("GET", "/", "shop.example.com"))
    assert (await read_response(kept_reader)).status == 200  # not dropped by the change
    kept_writer.close()


async def test_private_keys_appear_in_no_admin_output_or_status_line(
        router_factory, dyno_factory, ca, capsys):
    dyno = await dyno_factory()
    good = cert_entry(ca, "shop.example.com")
    # A key that does not match its chain: reported by app and position, without the key.
    mismatched = {"chain": cert_entry(ca, "shop.example.com")["chain"], "key": good["key"]}
    table = table_of(app_entry("shop", ["shop.example.com"], [dyno],
                               certificates=[good, mismatched]))
    router = await router_factory(table, listen_tls=TLS, admin=True)
    key_body = good["key"].splitlines()[1]
    admin = f"http://127.0.0.1:{router.router.admin_port}"

    def fetch(path: str) -> str:
        with urllib.request.urlopen(admin + path, timeout=10) as answer:
            return answer.read().decode()

    for path in ("/snapshot", "/metrics"):
        text = await asyncio.to_thread(fetch, path)
        assert "PRIVATE KEY" not in text and key_body not in text
    snapshot = json.loads(await asyncio.to_thread(fetch, "/snapshot"))
    assert snapshot["gauges"]["tls_hosts"][1] == 1  # shop.example.com, by the good one
    status = capsys.readouterr().err
    assert "app shop: certificates[1] not used" in status
    assert "PRIVATE KEY" not in status and key_body not in status
    assert key_body not in repr(router.router.table.app("shop"))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_gets_the_apps_certificate_by_sni(router_factory, dyno_factory, ca, tmp_path):
    dyno = await dyno_factory()
    table = table_of(app_entry("shop", ["shop.example.com"], [dyno], certificates=[
        cert_entry(ca, "shop.example.com")]))
    router = await router_factory(table, listen_tls=TLS)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = router.router.tls_port
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--http1.1", "--cacert", str(ca_file),
        "--resolve", f"shop.example.com:{port}:127.0.0.1", f"https://shop.example.com:{port}/",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(curl.communicate(), 30)
    assert curl.returncode == 0, err
    assert out == b"web.1 / "


async def test_router_workers_serve_https_from_a_routes_file_and_reload_its_certificate(
        dyno_factory, ca, tmp_path):
    dyno = await dyno_factory()
    routes = tmp_path / "routes.json"

    def write(certificate: dict[str, str]) -> None:
        routes.write_text(json.dumps({"apps": [{
            "name": "shop", "hosts": ["shop.example.com"], "certificates": [certificate],
            "dynos": [{"name": "web.1", "address": dyno.address}]}]}))

    first, second = cert_entry(ca, "shop.example.com"), cert_entry(ca, "shop.example.com")
    write(first)
    process = await asyncio.create_subprocess_exec(
        *dynomesh_argv("router", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
                       "--admin", "off", "--routes", str(routes), "--workers", "2"),
        env=dynomesh_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    context = client_context(ca)

    async def line(pattern: str) -> re.Match:
        async with asyncio.timeout(60):
            while True:
                text = (await process.stderr.readline()).decode()
                assert text, f"the router exited before saying {pattern!r}"
                assert "PRIVATE KEY" not in text
                if match := re.search(pattern, text):
                    return match

    async def serials(count: int) -> set[int]:
        seen = set()
        for _ in range(count):  # new connections: the kernel spreads them over the workers
            certificate, response = await https_request(port, "shop.example.com", context)
            assert response.status == 200
            seen.add(certificate.serial_number)
        return seen

    try:
        port = int((await line(r"router: ready on http://127\.0\.0\.1:\d+ and "
                               r"https://127\.0\.0\.1:(\d+) .*2 workers")).group(1))
        old = await serials(4)
        write(second)
        process.send_signal(signal.SIGHUP)  # passed on: each worker reads the file again
        assert {(await line(r"worker (\d)\]: reloaded 1 apps")).group(1)
                for _ in range(2)} == {"1", "2"}
        new = await serials(6)
        assert len(old) == len(new) == 1 and old != new
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    assert process.returncode == 0, err
    lines = out.decode().splitlines()
    assert len(lines) == 10 and all("protocol=https" in line for line in lines)
    for key in (first["key"], second["key"]):
        assert not any(part in out.decode() + err.decode() for part in key_lines(key))


def test_a_default_certificate_needs_its_key(tmp_path):
    result = subprocess.run(
        dynomesh_argv("router", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
                      "--admin", "off", "--routes", str(tmp_path / "none.json"),
                      "--tls-default-cert", str(tmp_path / "cert.pem")),
        env=dynomesh_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--tls-default-cert and --tls-default-key go together" in result.stderr


async def test_the_alpn_hook_hands_a_connection_to_the_protocol_negotiated(
        router_factory, dyno_factory, ca):
    """What h2 plugs into: a registered protocol gets the connections that chose it; the
    others (and clients without ALPN) stay HTTP/1.1."""
    dyno = await dyno_factory()
    table = table_of(app_entry("shop", ["shop.example.com"], [dyno], certificates=[
        cert_entry(ca, "shop.example.com")]))

    class Greeter(asyncio.Protocol):
        def __init__(self, router, listener) -> None:
            self.greeting = f"{listener.scheme} {listener.port}".encode()

        def connection_made(self, transport) -> None:
            transport.write(self.greeting)
            transport.close()

    router = Router(RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=None, listen_tls=TLS),
                    sinks=[MemorySink()])
    router.alpn.register("x-greeting", Greeter)
    router.install(table)
    await router.start()
    try:
        for offered, expected in [(["x-greeting", "http/1.1"], "x-greeting"),
                                  (["http/1.1"], "http/1.1"), (None, None)]:
            context = client_context(ca)
            if offered:
                context.set_alpn_protocols(offered)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", router.tls_port, ssl=context, server_hostname="shop.example.com")
            assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == expected
            if expected == "x-greeting":
                assert await reader.read() == f"https {router.tls_port}".encode()
            else:
                writer.write(build_request("GET", "/", "shop.example.com"))
                assert (await read_response(reader)).status == 200
            writer.close()
    finally:
        await router.stop()
