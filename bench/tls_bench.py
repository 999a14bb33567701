#!/usr/bin/env python3
"""TLS benchmark: the dynomesh router's TLS listener beside nginx, same certificate, same curve.

    python bench/tls_bench.py                     # 10 s per measurement, 2000 idle connections
    python bench/tls_bench.py --duration 5 --idle 1000 --runs 3

Three figures for each of the two:

- handshakes: wrk with `Connection: close`, so every request opens a connection and does a
  full handshake (wrk does not resume sessions); handshakes per second and the proxy's CPU per
  handshake (utime+stime of its processes from /proc over the run, divided by the requests);
- keep-alive: wrk at 50 HTTPS/1.1 keep-alive connections, the proxy's CPU per request;
- idle connections: N TLS connections opened by this script, one request on each, then held
  idle; the growth of the proxy's resident memory (VmRSS of its processes) divided by N.

The certificate is ECDSA P-256 (made here with `cryptography`); the key exchange is X25519 in
both (nginx's `ssl_ecdh_curve X25519`; the router's OpenSSL default picks X25519 first, and
the script checks what each negotiated). TLS 1.3 for both. nginx runs one worker; both proxy
to the same backend nginx, pinned like bench/router_bench.py: the proxy on core 0, wrk and the
backend on core 1.

Results: a table on stdout and JSON under bench/results/ (tls-<UTC time>.json). Wall-clock
figures are noisy on a shared machine; the note in the JSON says what else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_bench import (LOAD_CORE, PROXY_CORE, REPO, RESULTS, Backend,  # noqa: E402
                          cpu_seconds, free_port, git_revision, process_tree,
                          raise_open_files_limit, stop_group, wait_for_port)

HOST = "app1.localhost"
# wrk sends its URL's host as the server name; app1.localhost does not resolve on every
# machine, so the URL names 127.0.0.1, which the certificate and the route entry also carry
# (as a DNS name): the router's SNI lookup then finds the app's certificate, as for a name.
SNI = "127.0.0.1"


def make_certificate(work: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for HOST: (chain file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST), x509.DNSName(SNI)]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    chain, key_file = work / "cert.pem", work / "key.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return chain, key_file


def nginx_tls_conf(work: Path, port: int, backend: int, chain: Path, key: Path,
                   http2: bool = False) -> Path:
    conf = work / "nginx-tls.conf"
    conf.write_text(f"""
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {work}/nginx-tls.pid;
error_log {work}/nginx-tls-error.log;
events {{ worker_connections 16384; }}
http {{
    access_log {work}/nginx-tls-access.log combined buffer=64k flush=1s;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream app {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 10000000; }}
    server {{
        listen 127.0.0.1:{port} ssl{" http2" if http2 else ""};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Request-Id $request_id;
        }}
    }}
}}
""")
    return conf


def router_routes(work: Path, backend: int, chain: Path, key: Path) -> Path:
    path = work / "routes-tls.json"
    path.write_text(json.dumps({"apps": [{
        "name": "app1", "hosts": [HOST, SNI], "state": "running",
        "dynos": [{"name": "web.1", "address": f"127.0.0.1:{backend}"}],
        "certificates": [{"chain": chain.read_text(), "key": key.read_text()}]}]}))
    path.chmod(0o600)
    return path


class Proxy:
    """nginx or the router, TLS on `port`, pinned to the proxy core."""

    def __init__(self, name: str, work: Path, backend: int, chain: Path, key: Path,
                 http2: bool = False) -> None:
        """`http2`: nginx offers h2 too (bench/h2_bench.py); the router always does."""
        self.name = name
        self.port = free_port()
        if name == "nginx":
            argv = ["nginx", "-c", str(nginx_tls_conf(work, self.port, backend, chain, key,
                                                      http2)), "-p", str(work)]
            env, out = {}, subprocess.DEVNULL
        else:
            argv = [sys.executable, "-m", "dynomesh", "router", "--listen",
                    f"127.0.0.1:{free_port()}", "--listen-tls", f"127.0.0.1:{self.port}",
                    "--admin", "off", "--header-timeout", "300",
                    "--routes", str(router_routes(work, backend, chain, key))]
            env, out = {"PYTHONPATH": str(REPO)}, open(work / "router-access.log", "wb")
        self.proc = subprocess.Popen(["taskset", "-c", PROXY_CORE, *argv], stdout=out,
                                     stderr=open(work / f"{name}-tls.stderr", "wb"),
                                     env={**os.environ, **env}, start_new_session=True)
        wait_for_port(self.port, self.proc, timeout=60)

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total

    def stop(self) -> None:
        stop_group(self.proc, 30)


def wrk(port: int, seconds: float, connections: int, close: bool) -> tuple[int, int]:
    """-> (requests completed, errors)."""
    headers = ["-H", "Connection: close"] if close else []
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}",
            f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-H", f"Host: {HOST}",
            *headers, f"https://{SNI}:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    done = re.search(r"(\d+) requests in", out)
    if done is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    # With Connection: close every response ends its connection; wrk counts those as read
    # errors on some versions, so only connect/write/timeout and bad statuses count here.
    failed = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(errors.group(i)) for i in (1, 3, 4)) if errors else 0)
    return int(done.group(1)), failed


def measure_load(proxy: Proxy, seconds: float, connections: int, close: bool) -> dict:
    wrk(proxy.port, min(2, seconds), connections, close)  # warm up
    before, started = proxy.cpu(), time.monotonic()
    requests, errors = wrk(proxy.port, seconds, connections, close)
    elapsed = time.monotonic() - started
    cpu = proxy.cpu() - before
    return {"requests": requests, "per_second": round(requests / elapsed, 1),
            "cpu_us_per_request": round(cpu / max(requests, 1) * 1e6, 1), "errors": errors}


async def _idle_connections(port: int, count: int) -> list:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    held = []
    for start in range(0, count, 100):  # in batches: a burst of handshakes is not the point
        batch = await asyncio.gather(*(asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=SNI)
            for _ in range(min(100, count - start))))
        for reader, writer in batch:
            writer.write(request)
        for reader, writer in batch:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        held.extend(batch)
    return held


def measure_idle(proxy: Proxy, count: int) -> dict:
    async def run() -> dict:
        base = proxy.rss_kib()
        held = await asyncio.wait_for(_idle_connections(proxy.port, count), 300)
        await asyncio.sleep(1)  # let the proxy settle (freed handshake buffers) before reading
        grown = proxy.rss_kib()
        version = held[0][1].get_extra_info("ssl_object").version()
        for _, writer in held:
            writer.close()
        return {"connections": count, "rss_before_kib": base, "rss_after_kib": grown,
                "kib_per_connection": round((grown - base) / count, 2), "version": version}

    return asyncio.run(run())


def negotiated_group(port: int) -> str:
    """The key exchange group the proxy chose, as openssl s_client reports it."""
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                          "-servername", SNI, "-brief"], input="", capture_output=True,
                         text=True, timeout=30)
    for line in (out.stdout + out.stderr).splitlines():
        if "temp key" in line.lower() or "peer temp key" in line.lower():
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--idle", type=int, default=2000, help="idle TLS connections held")
    parser.add_argument("--handshake-connections", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1, help="rounds, interleaved")
    parser.add_argument("--note", default="", help="stored with the result")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/tls-*.json)")
    args = parser.parse_args()
    raise_open_files_limit()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dynomesh-tls-") as tmp:
        work = Path(tmp)
        chain, key = make_certificate(work)
        with Backend(work) as backend:
            for run in range(args.runs):
                for name in ("nginx", "dynomesh"):
                    proxy = Proxy(name, work, backend.port, chain, key)
                    try:
                        row = {"target": name, "run": run + 1,
                               "group": negotiated_group(proxy.port),
                               "handshakes": measure_load(proxy, args.duration,
                                                          args.handshake_connections, True),
                               "keepalive_50": measure_load(proxy, args.duration, 50, False),
                               "idle": measure_idle(proxy, args.idle)}
                    finally:
                        proxy.stop()
                    rounds.append(row)
                    print(f"  {name} run {run + 1}: done", file=sys.stderr)
    print_table(rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = args.out or RESULTS / f"tls-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps({
        "benchmark": "tls", "revision": git_revision(), "duration_s": args.duration,
        "certificate": "ECDSA P-256, self-signed", "note": args.note, "rounds": rounds},
        indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def print_table(rounds: list[dict]) -> None:
    print(f"{'target':<10} {'run':>3} {'group':<8} {'handshakes/s':>12} {'CPU us/hs':>10} "
          f"{'ka req/s':>9} {'CPU us/req':>10} {'KiB/idle conn':>13} {'errors':>6}")
    for row in rounds:
        hs, ka, idle = row["handshakes"], row["keepalive_50"], row["idle"]
        print(f"{row['target']:<10} {row['run']:>3} {row['group'][:8]:<8} "
              f"{hs['per_second']:>12.0f} {hs['cpu_us_per_request']:>10.0f} "
              f"{ka['per_second']:>9.0f} {ka['cpu_us_per_request']:>10.1f} "
              f"{idle['kib_per_connection']:>13.1f} {hs['errors'] + ka['errors']:>6}")


if __name__ == "__main__":
    sys.exit(main())
