"""Fuzzing the request parser: random bytes and mutated requests (hypothesis).

For every input the router answers or closes the connection and never crashes (no exception
reaches the event loop), and the dyno behind it only ever receives whole requests that the
router parsed and logged, each exactly once (matched by request id): nothing smuggled,
nothing split or glued together.

500 examples, the same ones every run (derandomized) so the suite stays reliable; set
DYNOMESH_FUZZ_EXAMPLES=5000 to explore new ones.
"""

import asyncio
import os
import random

import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.accesslog import MemorySink
from router.config import Endpoint, RouterConfig
from router.server import Router
from tests.router.conftest import app_entry, parse_logfmt, table_of
from tests.router.wire import Dyno, read_request, read_response, response_bytes

TEMPLATES = [
    b"GET / HTTP/1.1\r\nHost: app1.localhost\r\n\r\n",
    b"GET /a?b=c HTTP/1.1\r\nHost: app1.localhost\r\nAccept: */*\r\nCookie: x=1\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: app1.localhost\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT /u HTTP/1.1\r\nHost: app1.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: app1.localhost\r\nConnection: keep-alive\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: app1.localhost\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: app1.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET http://app1.localhost/x HTTP/1.1\r\nHost: other\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: app1.localhost\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
]
SPECIAL = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b",", b";", b"0", b"f",
           b"Content-Length: 7\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: app1.localhost\r\n",
           b"\r\n\r\n", b"GET / HTTP/1.1\r\n", b"HTTP/1.1", b"chunked", b"\xff"]


@st.composite
def mutated_requests(draw) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(TEMPLATES), min_size=1,
                                            max_size=3))))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "flip", "duplicate"]))
        if action == "insert":
            data[position:position] = draw(st.sampled_from(SPECIAL))
        elif action == "delete" and data:
            del data[position:position + draw(st.integers(1, 8))]
        elif action == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif action == "duplicate":
            data[position:position] = data[max(0, position - 20):position]
    return bytes(data)


INPUTS = st.one_of(st.binary(max_size=300), mutated_requests())


class Harness:
    """A router and a recording dyno on one uvloop loop, kept for all examples."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.crashes: list[dict] = []
        self.loop.set_exception_handler(lambda loop, context: self.crashes.append(context))
        self.received: list = []  # requests the dyno read whole
        self.broken: list[bytes] = []  # bytes the dyno could not read as requests
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self.dyno = await Dyno("web.1", self._record).start()
        self.sink = MemorySink()
        self.router = Router(RouterConfig(listen=Endpoint("127.0.0.1", 0), admin=None,
                                          header_timeout=0.5, request_timeout=0.5,
                                          idle_timeout=0.5),
                             sinks=[self.sink], rng=random.Random(1))
        self.router.install(table_of(app_entry("app1", dynos=[self.dyno])))
        await self.router.start()

    async def _record(self, dyno, reader, writer) -> None:
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError as error:
                if error.partial:  # the router cut a request short: fine, if never whole
                    return
                return
            except (ValueError, asyncio.LimitOverrunError) as error:
                self.broken.append(repr(error).encode())
                return
            self.received.append(request)
            writer.write(response_bytes(body=b"ok"))
            await writer.drain()

    async def send(self, data: bytes, cuts: list[int]) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.router.port)
        previous = 0
        for cut in sorted(set(cuts)) + [len(data)]:
            writer.write(data[previous:cut])
            previous = cut
            await writer.drain()
            await asyncio.sleep(0)  # a loop turn between pieces: the router reads each alone
        writer.write_eof()  # done sending: the router answers what it can, then closes
        async with asyncio.timeout(10):  # bounded: the router must answer or close
            answer = await reader.read()
        writer.close()
        return answer

    async def request(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.router.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: app1.localhost\r\n\r\n")
        response = await read_response(reader)
        writer.close()
        return response

    def logged_request_ids(self) -> list[str]:
        self.router.log_writer.flush()
        return [parse_logfmt(line.decode("latin-1").split(": ", 1)[1])["request_id"]
                for line in self.sink.lines]

    def close(self) -> None:
        async def stop():
            await self.router.stop()
            await self.dyno.stop()
        self.loop.run_until_complete(stop())
        self.loop.close()


def test_random_and_mutated_requests_never_crash_or_smuggle():
    harness = Harness()
    try:
        @settings(max_examples=int(os.environ.get("DYNOMESH_FUZZ_EXAMPLES", "500")), deadline=None,
                  derandomize="DYNOMESH_FUZZ_EXAMPLES" not in os.environ,
                  suppress_health_check=list(HealthCheck))
        @given(data=INPUTS, cuts=st.lists(st.integers(0, 400), max_size=4))
        def example(data: bytes, cuts: list[int]) -> None:
            harness.crashes.clear()
            harness.broken.clear()
            answer = harness.loop.run_until_complete(harness.send(data, cuts))
            assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
            assert not harness.crashes, harness.crashes
            assert not harness.broken, (data, harness.broken)

        example()
        # Every request the dyno got whole was parsed and logged by the router, once.
        logged = harness.logged_request_ids()
        seen = [request.get("X-Request-Id").decode() for request in harness.received]
        assert len(seen) == len(set(seen))
        assert set(seen) <= set(logged)
        assert len(seen) > 20  # the mutations still let plenty of good requests through
        # And the router still serves.
        response = harness.loop.run_until_complete(harness.request())
        assert response.status == 200 and response.body == b"ok"
    finally:
        harness.close()
