"""The router log line: Heroku's fields, logfmt exactly as the shared logline module writes."""

from hypothesis import example, given
from hypothesis import strategies as st

from dynomesh import logline
from router.accesslog import AccessLog, BufferedLogWriter, MemorySink
import pytest

pytestmark = pytest.mark.unit

WALL = 1795000000.25  # 2026-11-18T...: a fixed moment


def one_line(**overrides) -> str:
    sink = MemorySink()
    log = AccessLog(BufferedLogWriter([sink]))
    fields = dict(app="app1", wall=WALL, method=b"GET", path=b"/", host=b"app1.localhost",
                  request_id=b"8a1f2e0c-7a8e-4a8a-9f3b-2b1a0c9d8e7f", fwd=b"127.0.0.1",
                  dyno=b"web.1", connect_ms=1, service_ms=18, status=200, nbytes=13)
    fields.update(overrides)
    log.info(**fields)
    log.writer.flush()
    (record,) = sink.records
    assert record[0] == "app1"
    return record[1].decode("latin-1")


def expected(path="/", fwd="127.0.0.1", request_id="8a1f2e0c-7a8e-4a8a-9f3b-2b1a0c9d8e7f"):
    return logline.logfmt([
        ("at", "info"), ("method", "GET"), ("path", path), ("host", "app1.localhost"),
        ("request_id", request_id), ("fwd", fwd), ("dyno", "web.1"), ("connect", "1ms"),
        ("service", "18ms"), ("status", 200), ("bytes", 13), ("protocol", "http")],
        quoted=("path", "fwd", "desc"))


def test_info_line_is_herokus_format_with_a_log_stream_prefix():
    line = one_line()
    assert line == (logline.rfc5424_timestamp(WALL) + " heroku[router]: " + expected())
    assert line.split(" heroku[router]: ", 1)[1] == (
        'at=info method=GET path="/" host=app1.localhost '
        'request_id=8a1f2e0c-7a8e-4a8a-9f3b-2b1a0c9d8e7f fwd="127.0.0.1" dyno=web.1 '
        'connect=1ms service=18ms status=200 bytes=13 protocol=http')


@given(path=st.binary(min_size=1, max_size=40).map(lambda b: b"/" + b),
       fwd=st.binary(max_size=30),
       request_id=st.text("AZaz09+/=-", min_size=20, max_size=40))
@example(path=b"/ heroku[router]: ", fwd=b"", request_id="0" * 20)  # the prefix inside a value
def test_values_are_quoted_and_escaped_as_logfmt_does(path, fwd, request_id):
    line = one_line(path=path, fwd=fwd, request_id=request_id.encode())
    assert line.split(" heroku[router]: ", 1)[1] == expected(
        path.decode("latin-1"), fwd.decode("latin-1"), request_id)


def test_router_error_line_has_code_and_desc_after_at():
    sink = MemorySink()
    log = AccessLog(BufferedLogWriter([sink]))
    log.router_error("app1", WALL, "H10", "App crashed", "error", b"GET", b"/", b"app1.localhost",
                     b"r" * 20, b"127.0.0.1", None, None, None, 503, 0)
    log.writer.flush()
    message = sink.lines[0].decode().split(" heroku[router]: ", 1)[1]
    assert message == logline.logfmt([
        ("at", "error"), ("code", "H10"), ("desc", "App crashed"), ("method", "GET"),
        ("path", "/"), ("host", "app1.localhost"), ("request_id", "r" * 20),
        ("fwd", "127.0.0.1"), ("dyno", ""), ("connect", ""), ("service", ""), ("status", 503),
        ("bytes", 0), ("protocol", "http")], quoted=("path", "fwd", "desc"))


def test_buffered_writer_holds_lines_until_flushed_or_full():
    sink = MemorySink()
    writer = BufferedLogWriter([sink], max_pending=3)
    writer.write("a", b"one")
    writer.write("a", b"two")
    assert sink.lines == []
    writer.write(None, b"three")  # the third fills the buffer: handed over at once
    assert sink.lines == [b"one", b"two", b"three"]
    writer.write("a", b"four")
    writer.flush()
    assert sink.lines[-1] == b"four"


def test_every_sink_gets_every_batch():
    first, second = MemorySink(), MemorySink()
    writer = BufferedLogWriter([first, second])
    writer.write("app1", b"line")
    writer.flush()
    assert first.records == second.records == [("app1", b"line")]
