"""The admin listener: /healthz, /readyz, /metrics (Prometheus)."""

import aiohttp

from tests.router.conftest import app_entry, table_of


async def get(router, path):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{router.router.admin_port}{path}") as response:
            return response.status, await response.text(), response.headers


async def test_healthz_answers_while_readyz_waits_for_a_table(router_factory):
    router = await router_factory(None, admin=True)
    assert (await get(router, "/healthz"))[:2] == (200, "ok\n")
    status, text, _ = await get(router, "/readyz")
    assert status == 503 and "no routing table" in text
    router.install(table_of({"name": "app1", "hosts": ["app1.localhost"]}, revision=7))
    status, text, _ = await get(router, "/readyz")
    assert status == 200 and "1 apps, revision 7" in text


async def test_metrics_count_requests_times_and_the_table(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno]),
                                           {"name": "off", "hosts": ["off.localhost"],
                                            "state": "scaled_to_zero"}, revision=5), admin=True)
    client = await router.client()
    for _ in range(2):
        assert (await client.request(host="app1.localhost")).status == 200
    await client.close()
    for host in ("off.localhost", "nobody.localhost"):
        other = await router.client()
        await other.request(host=host)
        await other.close()
    status, text, headers = await get(router, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    lines = set(text.splitlines())
    assert 'dynomesh_router_requests_total{app="app1",code="",status="200"} 2.0' in lines
    assert 'dynomesh_router_requests_total{app="off",code="H14",status="503"} 1.0' in lines
    assert 'dynomesh_router_unrouted_requests_total{status="404"} 1.0' in lines
    assert 'dynomesh_router_connect_seconds_count{app="app1"} 2.0' in lines
    assert 'dynomesh_router_service_seconds_count{app="app1"} 2.0' in lines
    assert 'dynomesh_router_service_seconds_bucket{app="app1",le="+Inf"} 2.0' in lines
    assert 'dynomesh_router_in_flight_requests{app="app1"} 0.0' in lines
    assert "dynomesh_router_routes_apps 2.0" in lines
    assert "dynomesh_router_routes_revision 5.0" in lines
    assert "dynomesh_router_upstream_connections_idle 1.0" in lines
