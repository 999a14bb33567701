"""Expect: 100-continue (the router answers it) and interim 1xx responses."""

import asyncio

from tests.router.conftest import app_entry, table_of, wait_until
from tests.router.wire import build_request, read_head, read_response, response_bytes


async def test_expect_100_continue_is_answered_before_the_body_is_sent(dyno_factory,
                                                                      router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(b"PUT /file HTTP/1.1\r\nHost: app1.localhost\r\nExpect: 100-continue\r\n"
                      b"Content-Length: 5\r\n\r\n")
    interim = await read_head(client.reader)
    assert interim[0] == b"HTTP/1.1 100 Continue"
    await client.send(b"hello")
    response = await client.response()
    assert response.status == 200 and response.body == b"web.1 /file hello"
    assert dyno.requests[0].get("Expect") is None  # the router answered it
    await client.close()


async def test_expect_from_an_http10_client_is_ignored(dyno_factory, router_factory):
    dyno = await dyno_factory()
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    response = await client.request("POST", "/", host="app1.localhost", version="1.0",
                                    headers=[("Expect", "100-continue")], body=b"abc")
    assert response.status == 200  # the first thing read is the final response
    await client.close()


async def test_interim_responses_reach_http11_clients_only(dyno_factory, router_factory):
    async def early_hints(dyno, reader, writer):
        while True:
            await dyno.next_request(reader)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                         + response_bytes(body=b"final"))
            await writer.drain()

    dyno = await dyno_factory(handler=early_hints)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    await client.send(build_request(host="app1.localhost"))
    start, headers, _ = await read_head(client.reader)
    assert start == b"HTTP/1.1 103 Early Hints"
    assert (b"Link", b"</style.css>; rel=preload") in headers
    final = await read_response(client.reader)
    assert final.status == 200 and final.body == b"final"
    assert router.log_fields()["status"] == "200"
    old = await router.client()
    response = await old.request(host="app1.localhost", version="1.0")
    assert response.status == 200 and response.body == b"final"  # no 103 for HTTP/1.0
    await client.close()


async def test_a_status_below_100_is_h17(dyno_factory, router_factory):
    async def odd(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 099 Odd\r\n\r\n")
        await writer.drain()
        await reader.read()

    dyno = await dyno_factory(handler=odd)
    router = await router_factory(table_of(app_entry("app1", dynos=[dyno])))
    client = await router.client()
    assert (await client.request(host="app1.localhost")).status == 502
    assert router.log_fields()["code"] == "H17"
