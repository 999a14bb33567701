"""HTTPS through `dynomesh up --https`: a certificate added with the CLI is served by SNI,
renewed and removed without a restart; its key never shows in the CLI's output."""

from __future__ import annotations

import datetime
import re
import subprocess

import pytest
import trustme

from tests.e2e.harness import copy_example, poll

pytestmark = pytest.mark.timeout(240)

HOST = "www.e2e-tls.test"


def curl(platform, ca_file, *more: str) -> subprocess.CompletedProcess:
    port = platform.up.https_port
    return subprocess.run(
        ["curl", "-sS", "--http1.1", "--max-time", "20", "--cacert", str(ca_file),
         "--resolve", f"{HOST}:{port}:127.0.0.1", "-w", "\n%{http_code}", *more,
         f"https://{HOST}:{port}/"], capture_output=True, text=True, timeout=60)


def served_expiry(platform, ca_file) -> datetime.datetime | None:
    """The expiry of the certificate the router presents, from curl's verbose output."""
    match = re.search(r"expire date: (\w+) +(\d+) ([\d:]+) (\d+) GMT",
                      curl(platform, ca_file, "-v").stderr)
    if match is None:
        return None
    return datetime.datetime.strptime(" ".join(match.groups()), "%b %d %H:%M:%S %Y")


def write_leaf(ca: trustme.CA, directory, name: str, days: int):
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = ca.issue_cert(HOST, not_before=now - datetime.timedelta(hours=1),
                         not_after=now + datetime.timedelta(days=days))
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key, [line for line in key.read_text().splitlines() if len(line) > 20]


def test_https_with_an_added_certificate_renewed_and_removed(platform, make_app, workdir):
    app = make_app("e2e-tls")
    platform.cli.ok("deploy", str(copy_example("hello", workdir)), "--app", app)
    platform.cli.ok("domains:add", HOST, "--app", app)
    ca = trustme.CA()
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    # Before any certificate: the default (self-signed) one, which curl refuses.
    assert curl(platform, ca_file).returncode == 60  # "peer certificate cannot be authenticated"

    cert, key, key_text = write_leaf(ca, workdir, "first", days=60)
    other_cert, _, _ = write_leaf(ca, workdir, "other", days=60)
    refused = platform.cli.run("certs:add", str(other_cert), str(key), "--app", app)
    assert refused.returncode != 0
    assert "does not belong to the certificate" in refused.stderr
    added = platform.cli.ok("certs:add", str(cert), str(key), "--app", app)
    assert f"names    {HOST}" in added and re.search(r"expires  \d{4}-\d\d-\d\d \(in 5\d days\)",
                                                    added), added
    answered = poll(lambda: (lambda r: r if r.returncode == 0 else None)(curl(platform, ca_file)),
                    "an HTTPS answer with the app's certificate")
    assert answered.stdout.startswith("Hello from web.1") and answered.stdout.endswith("\n200")
    platform.up.wait_for(rf"heroku\[router\]: at=info .*host={re.escape(HOST)}:\d+ .*"
                         r"protocol=https", timeout=30)

    # A renewal beside it: the later expiry is served; then the first is removed.
    renewed, renewed_key, renewed_text = write_leaf(ca, workdir, "renewed", days=80)
    platform.cli.ok("certs:add", str(renewed), str(renewed_key), "--app", app)
    listed = platform.cli.json("certs", "--app", app)
    assert [c["names"] for c in listed] == [[HOST], [HOST]]
    table = platform.cli.ok("certs", "--app", app)
    assert re.search(r"^ID +NAMES +EXPIRES +SOURCE$", table, re.M) and "uploaded" in table
    later = datetime.datetime.now() + datetime.timedelta(days=70)
    poll(lambda: (served_expiry(platform, ca_file) or later) > later,
         "the renewed certificate (the later expiry) served", timeout=30)
    first_id = listed[0]["id"]
    assert "Removed certificate" in platform.cli.ok("certs:remove", first_id, "--app", app)
    for text in (added, table, str(listed)):
        assert not any(line in text for line in key_text + renewed_text)
    remaining = platform.cli.json("certs", "--app", app)
    assert [c["id"] for c in remaining] == [listed[1]["id"]]
    platform.cli.ok("certs:remove", remaining[0]["id"], "--app", app)
    poll(lambda: curl(platform, ca_file).returncode == 60,
         "the default certificate again once the app has none")
