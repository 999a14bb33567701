"""HTTP/2 to clients (router/h2conn.py, h2stream.py): real TLS sockets on loopback, the `h2`
library and curl as clients, scripted dynos behind the in-process router."""

from __future__ import annotations

import asyncio

import pytest
import trustme
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from router.config import Endpoint
from router.flow import PEER_BUFFER_FULL
from router.h2conn import H2Connection
from tests.certificates import issue
from tests.conftest import free_port
from tests.router.conftest import app_entry, parse_logfmt, table_of, wait_until
from tests.router.h2wire import INITIAL_WINDOW, H2Client
from tests.router.wire import response_bytes

pytestmark = pytest.mark.functional


TLS = Endpoint("127.0.0.1", 0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.ECDSA)


@pytest.fixture(scope="module")
def certificate(ca) -> dict[str, str]:
    return issue(ca, "app1.localhost", "*.localhost")


@pytest.fixture
async def edge(router_factory, dyno_factory, ca, certificate):
    """A router with app1 on one echoing dyno, its certificate in the route entry, and the
    TLS listener (--listen-tls) in front, speaking HTTP/2 to clients that offer it."""
    dyno = await dyno_factory("web.1")
    routed = await router_factory(table_of(app1([dyno], certificate)), listen_tls=TLS)
    routed.dyno = dyno
    routed.certificate = certificate
    clients: list[H2Client] = []

    async def connect(**options) -> H2Client:
        client = await H2Client.connect(routed.router.tls_port, ca, **options)
        clients.append(client)
        return client

    routed.connect = connect
    yield routed
    for client in clients:
        await client.close()


def app1(dynos, certificate, **fields):
    return app_entry("app1", dynos=dynos, certificates=[certificate], **fields)


async def test_a_request_reaches_the_dyno_as_http11_with_the_usual_fields(edge):
    client = await edge.connect()
    response = await client.get("/hello?x=1", headers=[("cookie", "a=1"), ("cookie", "b=2")])
    assert response.status == 200
    assert bytes(response.body) == b"web.1 /hello?x=1 "
    assert response.get(b"via") == b"1.1 dynomesh"
    assert response.get(b"connection") is None  # connection-specific: never over HTTP/2
    request = edge.dyno.requests[-1]
    assert request.start == b"GET /hello?x=1 HTTP/1.1"
    assert request.get("Host") == b"app1.localhost"
    assert request.get("Cookie") == b"a=1; b=2"
    assert request.get("X-Forwarded-For") == b"127.0.0.1"
    assert request.get("X-Request-Id") and request.get("X-Request-Start")
    assert request.get("Via") == b"1.1 dynomesh"
    assert request.get("X-Forwarded-Proto") == b"https"
    assert request.get("X-Forwarded-Port") == str(edge.router.tls_port).encode()
    fields = edge.log_fields()
    assert fields["protocol"] == "https" and fields["http_version"] == "2"
    assert fields["status"] == "200" and fields["dyno"] == "web.1"
    assert fields["path"] == "/hello?x=1" and fields["host"] == "app1.localhost"
    assert fields["request_id"] == request.get("X-Request-Id").decode()


async def test_a_body_without_length_goes_chunked_and_head_gets_no_body(edge):
    client = await edge.connect()
    stream_id = client.send("/up", method="POST", end=False)
    client.h2.send_data(stream_id, b"abc")
    client.h2.send_data(stream_id, b"def", end_stream=True)
    client.flush()
    response = await client.response(stream_id)
    assert bytes(response.body) == b"web.1 /up abcdef"
    posted = edge.dyno.requests[-1]
    assert posted.chunked and posted.get("Transfer-Encoding") == b"chunked"
    head = await client.get("/", method="HEAD")
    assert head.status == 200 and head.body == b"" and head.get(b"content-length") == b"8"


async def test_an_unknown_host_is_a_404_on_its_stream_and_the_connection_goes_on(edge):
    client = await edge.connect()
    missing = await client.get("/", host="nope.localhost")
    assert missing.status == 404 and b"no such app" in bytes(missing.body).lower()
    assert edge.log_fields()["http_version"] == "2"
    assert (await client.get("/after")).status == 200


# -- scripted dynos ---------------------------------------------------------------------------

def held_dyno(release: asyncio.Event, body: bytes = b"done"):
    """Reads a request, waits for `release`, answers; one request per connection."""
    async def handler(dyno, reader, writer):
        await dyno.next_request(reader)
        await release.wait()
        writer.write(response_bytes(body=body))
        await writer.drain()
    return handler


def streaming_dyno(first: bytes, rest: bytes, closed: asyncio.Event, release: asyncio.Event):
    """Sends a chunked response's head and `first`, then, once released, `rest`; sets `closed`
    if the router closes the connection before that."""
    async def handler(dyno, reader, writer):
        await dyno.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"%x\r\n%s\r\n" % (len(first), first))
        await writer.drain()
        hang_up = asyncio.ensure_future(reader.read())
        released = asyncio.ensure_future(release.wait())
        await asyncio.wait([hang_up, released], return_when=asyncio.FIRST_COMPLETED)
        if hang_up.done():
            released.cancel()
            closed.set()
            return
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        await writer.drain()
        await hang_up
    return handler


def counting_dyno(read_body: asyncio.Event):
    """Waits for `read_body` before reading a request's body; answers with its length."""
    async def handler(dyno, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        writer.transport.pause_reading()  # the kernel's buffers fill up, then the router's
        await read_body.wait()
        writer.transport.resume_reading()
        body = await reader.readexactly(length)
        writer.write(response_bytes(body=b"%d %d" % (len(body), body.count(b"x"))))
        await writer.drain()
    return handler


async def h2_connection(edge) -> H2Connection:
    """The router's one HTTP/2 connection (in process), once it is up."""
    await wait_until(lambda: any(isinstance(c, H2Connection) for c in edge.router.clients))
    return next(c for c in edge.router.clients if isinstance(c, H2Connection))


async def routed_to(edge, dyno_factory, handler):
    dyno = await dyno_factory("web.1", handler)
    edge.install(table_of(app1([dyno], edge.certificate)))
    return dyno


# -- multiplexing, limits, resets ---------------------------------------------------------------

async def test_100_streams_at_once_on_one_connection_and_the_101st_is_refused(edge, dyno_factory):
    release = asyncio.Event()
    dyno = await routed_to(edge, dyno_factory, held_dyno(release))
    client = await edge.connect()
    streams = [client.send(f"/{i}") for i in range(100)]
    await dyno.wait_requests(100)  # all 100 are at the dyno at the same time
    # One over the advertised SETTINGS_MAX_CONCURRENT_STREAMS (the client library would not
    # send it: told it may).
    client.h2.remote_settings.update({SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    client.h2.remote_settings.acknowledge()
    extra = await client.get("/extra")
    assert extra.reset == ErrorCodes.REFUSED_STREAM
    release.set()
    responses = [await client.response(stream) for stream in streams]
    assert [r.status for r in responses] == [200] * 100
    assert all(bytes(r.body) == b"done" for r in responses)
    assert sorted(r.target for r in dyno.requests) == sorted(b"/%d" % i for i in range(100))
    assert dyno.connections == 100
    assert (await client.get("/again")).status == 200  # the connection is still good


async def test_a_client_reset_cancels_that_stream_only(edge, dyno_factory):
    closed, release = asyncio.Event(), asyncio.Event()
    await routed_to(edge, dyno_factory, streaming_dyno(b"first", b"rest", closed, release))
    client = await edge.connect()
    cancelled = client.send("/cancelled")
    kept = client.send("/kept")
    await wait_until(lambda: all(client.responses[s].body for s in (cancelled, kept)))
    client.reset(cancelled)
    await asyncio.wait_for(closed.wait(), 5)  # that request's dyno connection was closed
    lines = edge.log_lines()
    assert any("code=H27" in line and 'path="/cancelled"' in line for line in lines)
    release.set()
    response = await client.response(kept)
    assert response.status == 200 and bytes(response.body) == b"firstrest"
    assert client.terminated is None


async def test_a_response_is_paced_by_the_clients_windows(edge, dyno_factory):
    body = bytes(range(256)) * (2 * 1024 * 4)  # 2 MiB
    release = asyncio.Event()
    await routed_to(edge, dyno_factory, held_dyno(release, body))
    client = await edge.connect(settings={INITIAL_WINDOW: 16384}, auto_window=False)
    stream_id = client.send("/big")
    release.set()
    connection = await h2_connection(edge)
    # The client's windows are full: the router holds the rest and stops reading the dyno.
    await wait_until(lambda: any(s.blocked for s in connection.streams.values()))
    stream = connection.streams[stream_id]
    assert stream.exchange.upstream.gate.reasons  # the dyno connection's reading is paused
    assert len(client.responses[stream_id].body) <= 65535  # the connection's window at most
    client.auto_window = True
    client.give_window(stream_id)
    client.h2.increment_flow_control_window(len(body))
    client.flush()
    response = await client.response(stream_id)
    assert response.status == 200 and bytes(response.body) == body


async def test_a_response_the_client_stops_taking_is_reset_after_the_idle_timeout(
        router_factory, dyno_factory, ca, certificate):
    body = b"z" * 100_000  # over the client's windows, within what one read brings
    answer_now = asyncio.Event()
    answer_now.set()
    dyno = await dyno_factory("web.1", held_dyno(answer_now, body))
    routed = await router_factory(table_of(app1([dyno], certificate)), listen_tls=TLS,
                                  idle_timeout=0.3)
    client = await H2Client.connect(routed.router.tls_port, ca, auto_window=False,
                                    settings={INITIAL_WINDOW: 16384})
    try:
        response = await client.get("/")
        assert response.reset == ErrorCodes.INTERNAL_ERROR
        assert 0 < len(response.body) < len(body)
        assert routed.log_fields()["status"] == "200"  # the dyno's answer was complete
        assert (await client.get("/", method="HEAD")).status == 200  # the connection goes on
    finally:
        await client.close()


async def test_a_request_body_is_paced_by_the_dyno(edge, dyno_factory):
    read_body = asyncio.Event()
    await routed_to(edge, dyno_factory, counting_dyno(read_body))
    client = await edge.connect()
    size = 16 * 1024 * 1024
    stream_id = client.send("/upload", method="POST", headers=[("content-length", str(size))],
                            end=False)
    connection = await h2_connection(edge)
    sent = 0

    def push() -> int:
        """Send what the router's windows allow. -> the bytes sent so far."""
        nonlocal sent
        h2 = client.h2
        window = min(h2.local_flow_control_window(stream_id), size - sent)
        while window > 0:
            step = min(window, h2.max_outbound_frame_size)
            h2.send_data(stream_id, b"x" * step, end_stream=sent + step == size)
            sent += step
            window -= step
        client.flush()
        return sent

    def held_back() -> bool:
        """The client's window is shut and the router paused the stream: the dyno connection's
        buffers are full (the dyno is not reading)."""
        stream = connection.streams.get(stream_id)
        return stream is not None and bool(stream.gate.reasons & PEER_BUFFER_FULL) and (
            client.h2.local_flow_control_window(stream_id) == 0)

    async with asyncio.timeout(20):
        # The client sends whenever the loop is free, as an uploader would: each loop turn is
        # the point (the router's pause is its own state, announced to nobody).
        while push() < size and not held_back():
            await asyncio.sleep(0)
    assert sent < size  # the client was held back before sending it all
    read_body.set()
    async with asyncio.timeout(20):
        while True:  # send as the router opens the windows again
            client.window_opened.clear()
            if push() == size:
                break
            await client.window_opened.wait()
    response = await client.response(stream_id)
    assert bytes(response.body) == b"%d %d" % (size, size)


# -- misbehaving clients -------------------------------------------------------------------------

async def test_rapid_resets_end_the_connection_and_others_are_served(edge):
    attacker = await edge.connect()
    bystander = await edge.connect()
    for _ in range(300):
        stream_id = attacker.send("/")
        attacker.reset(stream_id)
        if attacker.closed.is_set():
            break
    await asyncio.wait_for(attacker.closed.wait(), 10)
    assert attacker.terminated is not None
    assert attacker.terminated.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert (await bystander.get("/")).status == 200


async def test_a_header_list_over_the_limit_ends_the_connection(edge):
    attacker = await edge.connect()
    bystander = await edge.connect()
    attacker.send("/", headers=[(f"x-flood-{i}", "v" * 1000) for i in range(100)])
    await asyncio.wait_for(attacker.closed.wait(), 10)
    assert attacker.terminated.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert (await bystander.get("/")).status == 200


async def test_too_many_header_fields_get_the_http11_pages_answer(edge):
    client = await edge.connect()
    response = await client.get("/", headers=[(f"x-{i}", "1") for i in range(1001)])
    assert response.status == 400
    assert edge.log_fields()["http_version"] == "2"
    assert (await client.get("/")).status == 200


async def test_a_continuation_flood_is_cut_off_before_the_block_is_gathered(edge):
    attacker = await edge.connect()
    bystander = await edge.connect()
    await attacker.get("/")  # a working connection first
    stream_id = attacker.h2.get_next_available_stream_id()
    # 40 frames of 4 KiB (under the library's 64-frame limit) without END_HEADERS yet.
    attacker.raw_header_block(stream_id, b"\x00" * (160 * 1024), frames=41)
    await asyncio.wait_for(attacker.closed.wait(), 10)
    assert attacker.terminated.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert (await bystander.get("/")).status == 200


# -- H-codes and the rest of the request path ---------------------------------------------------

async def test_dyno_failures_are_the_usual_h_codes_on_their_streams(edge, dyno_factory):
    async def hang_up(dyno, reader, writer):
        await dyno.next_request(reader)

    dead = await dyno_factory("web.1", hang_up)
    edge.install(table_of(app1([dead], edge.certificate),
                          {"name": "gone", "hosts": ["gone.localhost"],
                           "dynos": [{"name": "web.1", "address": f"127.0.0.1:{free_port()}"}]}))
    client = await edge.connect()
    closed = await client.get("/")
    assert closed.status == 503
    assert edge.log_fields()["code"] == "H13"
    refused = await client.get("/", host="gone.localhost")
    assert refused.status == 503
    assert edge.log_fields()["code"] == "H21"
    assert edge.log_fields()["http_version"] == "2"


async def test_curl_speaks_http2_and_a_client_without_it_gets_http11(edge, ca, tmp_path):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    upload = tmp_path / "upload"
    upload.write_bytes(b"y" * 300_000)
    port = edge.router.tls_port
    common = ["-sS", "--cacert", str(bundle), "-o", "-", "-w", "\n%{http_version}\n",
              "--resolve", f"app1.localhost:{port}:127.0.0.1"]
    url = f"https://app1.localhost:{port}"
    process = await asyncio.create_subprocess_exec(
        "curl", "--http2", *common, f"{url}/one",
        "--next", "--http2", *common, "--data-binary", f"@{upload}", f"{url}/two",
        "--next", "--http1.1", *common, f"{url}/three",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err
    assert out.split(b"\n") == [b"web.1 /one ", b"2", b"web.1 /two " + b"y" * 300_000, b"2",
                                 b"web.1 /three ", b"1.1", b""]
    posted = edge.dyno.requests[-2]
    assert posted.method == b"POST" and len(posted.body) == 300_000
    lines = [parse_logfmt(line.split(": ", 1)[1]) for line in edge.log_lines()]
    assert [(f["path"], f["protocol"], f.get("http_version")) for f in lines] == [
        ("/one", "https", "2"), ("/two", "https", "2"), ("/three", "https", None)]


async def test_draining_sends_goaway_and_finishes_the_streams_in_progress(edge, dyno_factory):
    release = asyncio.Event()
    await routed_to(edge, dyno_factory, held_dyno(release))
    client = await edge.connect()
    in_progress = client.send("/slow")
    connection = await h2_connection(edge)
    await wait_until(lambda: connection.streams)
    drained = asyncio.create_task(edge.router.drain(timeout=10))
    await wait_until(lambda: client.terminated is not None)
    assert client.terminated.error_code == ErrorCodes.NO_ERROR
    assert client.terminated.last_stream_id == in_progress
    release.set()
    assert (await client.response(in_progress)).status == 200
    assert await drained
    await asyncio.wait_for(client.closed.wait(), 5)
