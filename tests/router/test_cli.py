"""`dynomesh router` as a real command: flags, routes file errors, ready line, log on stdout."""

import asyncio
import json
import re
import signal
import subprocess

from tests.conftest import dynomesh_argv, dynomesh_env
from tests.router.wire import RawClient


def write_routes(tmp_path, document) -> str:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(document))
    return str(path)


async def test_router_command_serves_logs_and_stops_on_sigterm(dyno_factory, tmp_path):
    dyno = await dyno_factory()
    routes = write_routes(tmp_path, {"apps": [{
        "name": "app1", "hosts": ["app1.localhost", "*.example.com"], "maintenance": False,
        "state": "running", "dynos": [{"name": "web.1", "address": dyno.address}]}]})
    process = await asyncio.create_subprocess_exec(
        *dynomesh_argv("router", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--routes", routes),
        env=dynomesh_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            ready = (await process.stderr.readline()).decode()
        match = re.search(r"ready on http://127\.0\.0\.1:(\d+) with 1 apps .* admin on "
                          r"http://127\.0\.0\.1:(\d+)", ready)
        assert match, ready
        client = await RawClient.connect(int(match.group(1)))
        response = await client.request("GET", "/", host="app1.localhost")
        assert response.status == 200 and response.body == b"web.1 / "
        await client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    assert process.returncode == 0, err
    (line,) = out.decode().splitlines()
    assert " heroku[router]: at=info method=GET path=\"/\" host=app1.localhost " in line
    assert "dyno=web.1" in line and "status=200" in line


def run_router(*args) -> subprocess.CompletedProcess:
    return subprocess.run(dynomesh_argv("router", "--listen", "127.0.0.1:0", "--admin", "off",
                                        *args), env=dynomesh_env(), capture_output=True,
                          text=True, timeout=60)


def test_a_bad_routes_file_is_refused_naming_the_json_path(tmp_path):
    routes = write_routes(tmp_path, {"apps": [
        {"name": "a", "hosts": ["a.localhost"]}, {"name": "b", "hosts": ["b.localhost"]},
        {"name": "c", "hosts": ["c.localhost"], "dynos": [{"name": "web.1", "address": "nowhere"}]},
    ]})
    result = run_router("--routes", routes)
    assert result.returncode == 2
    assert "apps[2].dynos[0].address: not host:port" in result.stderr
    assert "docs/routes-format.md" in result.stderr


def test_two_apps_claiming_one_host_are_both_named(tmp_path):
    routes = write_routes(tmp_path, {"apps": [
        {"name": "blog", "hosts": ["www.example.com"]},
        {"name": "shop", "hosts": ["shop.example.com", "www.example.com"]}]})
    result = run_router("--routes", routes)
    assert result.returncode == 2
    assert "'blog'" in result.stderr and "'shop'" in result.stderr
    assert "www.example.com" in result.stderr


def test_help_teaches_with_an_example():
    result = subprocess.run(dynomesh_argv("router", "--help"), env=dynomesh_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "dynomesh router --listen 0.0.0.0:8080 --admin 127.0.0.1:8081 --routes routes.json" \
        in result.stdout
    assert "curl -H 'Host: app1.localhost'" in result.stdout


def test_a_bad_listen_address_is_named(tmp_path):
    routes = write_routes(tmp_path, {"apps": []})
    result = subprocess.run(dynomesh_argv("router", "--listen", "8080", "--routes", routes),
                            env=dynomesh_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--listen: expected HOST:PORT" in result.stderr


def test_bad_settings_are_named_with_their_flag(tmp_path):
    routes = write_routes(tmp_path, {"apps": []})
    for flags, message in [
        (["--trusted-proxies", "10.0.0.0/8,not-a-network"],
         "--trusted-proxies: 'not-a-network' is not an address or CIDR block"),
        (["--idle-timeout", "0"], "--idle-timeout: must be above 0"),
        (["--max-header-line", "10"], "--max-header-line: must be a whole number of at least 64"),
        (["--workers", "0"], "--workers: 1 to 256"),
        (["--listen-backlog", "0"], "--listen-backlog: 1 to 65535, not 0"),
        (["--max-body-size", "lots"], "--max-body-size: 'lots' is not a size"),
    ]:
        result = run_router("--routes", routes, *flags)
        assert result.returncode == 2 and message in result.stderr, (flags, result.stderr)


def test_help_lists_timeouts_limits_and_the_balancer_options():
    result = subprocess.run(dynomesh_argv("router", "--help"), env=dynomesh_env(),
                            capture_output=True, text=True, timeout=60)
    for text in ("--request-timeout", "--idle-timeout", "--header-timeout", "--drain-timeout",
                 "--max-request-line", "--max-body-size", "--trusted-proxies", "--proxy-protocol", "--workers",
                 "SIGHUP reloads", "docs/router.md"):
        assert text in result.stdout, text
