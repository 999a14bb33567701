"""The compiled hot path and its pure-Python twins (router/compiled.py).

The suite runs on whichever the build has (compiled, in CI); `DYNOMESH_PURE_PYTHON=1 pytest
tests/router` runs the router's tests on the twins. Here: the build did compile, the switch
works, an edited source is never shadowed by its old build, and compiled and pure give the same
bytes for the same heads and log lines.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import router.accesslog
import router.headers
from router import compiled
from router.errors import RequestRejected, ResponseRejected

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def twin(module) -> object:
    """The pure-Python module of `module`, loaded from its `.py` under another name."""
    name = module.__name__.replace(".", "_") + "_twin"
    source = Path(module.__file__).with_name(module.__name__.rpartition(".")[2] + ".py")
    spec = importlib.util.spec_from_file_location(name, source)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_the_list_of_compiled_modules_is_the_one_the_build_compiles():
    with open(ROOT / "pyproject.toml", "rb") as file:
        built = tomllib.load(file)["tool"]["dynomesh"]["compiled"]
    assert tuple(built) == compiled.TWINS


def test_this_build_runs_the_compiled_hot_path_unless_the_twins_are_asked_for():
    modules = [importlib.import_module(name) for name in compiled.TWINS]
    if compiled.pure_requested():
        assert not any(compiled.is_compiled(module) for module in modules)
        assert compiled.hot_path().startswith("hot path pure Python (DYNOMESH_PURE_PYTHON")
    else:
        # Built by `pip install -e ".[test]"` (Cython and gcc): a build that silently fell back
        # to the twins would cost every request about a third more instructions.
        assert all(compiled.is_compiled(module) for module in modules), compiled.hot_path()
        assert compiled.hot_path() == "hot path compiled"


def fake_package(tmp_path: Path, source: bytes, recorded: str | None, built: bool) -> Path:
    package = tmp_path / "router"
    package.mkdir()
    (package / "headers.py").write_bytes(source)
    if built:
        (package / ("headers" + importlib.machinery.EXTENSION_SUFFIXES[0])).write_bytes(b"")
    if recorded is not None:
        (package / compiled.SOURCES).write_text(json.dumps({"router.headers": recorded}))
    return package


def test_a_compiled_module_built_from_this_source_is_left_to_the_standard_import(tmp_path):
    package = fake_package(tmp_path, b"X = 1\n", None, built=True)
    (package / compiled.SOURCES).write_text(
        json.dumps({"router.headers": compiled.source_hash(str(package / "headers.py"))}))
    finder = compiled.SourceTwinFinder(pure=False)
    assert finder.find_spec("router.headers", [str(package)]) is None
    assert finder.stale == []


def test_a_source_edited_since_it_was_compiled_is_imported_as_source(tmp_path):
    package = fake_package(tmp_path, b"X = 2\n", recorded="0" * 64, built=True)
    finder = compiled.SourceTwinFinder(pure=False)
    spec = finder.find_spec("router.headers", [str(package)])
    assert spec.origin == str(package / "headers.py")
    assert finder.stale == ["router.headers"]


def test_one_module_edited_since_it_was_compiled_brings_all_of_them_from_source(tmp_path):
    # The compiled modules cimport each other's types: a compiled exchange beside a pure client
    # would not even import. So one stale module makes every module in TWINS come from source.
    package = fake_package(tmp_path, b"X = 4\n", None, built=True)
    (package / "client.py").write_bytes(b"Y = 1\n")
    (package / ("client" + importlib.machinery.EXTENSION_SUFFIXES[0])).write_bytes(b"")
    (package / compiled.SOURCES).write_text(json.dumps({
        "router.headers": compiled.source_hash(str(package / "headers.py")),
        "router.client": "0" * 64}))
    finder = compiled.SourceTwinFinder(pure=False)
    assert finder.find_spec("router.headers", [str(package)]).origin.endswith("headers.py")
    assert finder.find_spec("router.client", [str(package)]).origin.endswith("client.py")
    assert finder.stale == ["router.client"]


def test_a_module_whose_build_failed_brings_the_compiled_ones_from_source_too(tmp_path):
    package = fake_package(tmp_path, b"X = 6\n", None, built=True)
    (package / compiled.SOURCES).write_text(
        json.dumps({"router.headers": compiled.source_hash(str(package / "headers.py"))}))
    (package / "client.py").write_bytes(b"Y = 2\n")  # no extension module beside it
    finder = compiled.SourceTwinFinder(pure=False)
    assert finder.find_spec("router.headers", [str(package)]).origin.endswith("headers.py")
    assert finder.unbuilt == ["router.client"]


def test_a_changed_declaration_file_makes_its_build_out_of_date(tmp_path):
    package = fake_package(tmp_path, b"X = 5\n", None, built=True)
    before = compiled.source_hash(str(package / "headers.py"))
    (package / "headers.pxd").write_text("cdef int X\n")
    assert compiled.source_hash(str(package / "headers.py")) != before


def test_the_twins_asked_for_are_imported_as_source_and_other_modules_are_not_touched(tmp_path):
    package = fake_package(tmp_path, b"X = 3\n", None, built=True)
    (package / compiled.SOURCES).write_text(
        json.dumps({"router.headers": compiled.source_hash(str(package / "headers.py"))}))
    finder = compiled.SourceTwinFinder(pure=True)
    assert finder.find_spec("router.headers", [str(package)]).origin.endswith("headers.py")
    assert finder.find_spec("router.exchange", [str(package)]) is None


# -- the same bytes, compiled or not ---------------------------------------------------------

HEADERS_TWIN = twin(router.headers)
ACCESSLOG_TWIN = twin(router.accesslog)

NAMES = st.sampled_from([
    b"Host", b"host", b"Accept", b"Connection", b"Content-Length", b"Transfer-Encoding",
    b"Expect", b"Upgrade", b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Request-Id",
    b"X-Request-Start", b"Via", b"TE", b"Keep-Alive", b"Proxy-Connection", b"Trailer",
    b"Set-Cookie", b"Date", b"Server", b"Cookie", b"X-Custom"])
VALUES = st.one_of(
    st.sampled_from([b"app1.localhost", b"close", b"keep-alive", b"chunked", b"gzip, chunked",
                     b"100-continue", b"websocket", b"Upgrade", b"5", b"0", b"10, 10",
                     b"1.2.3.4", b"trailers", b"", b"X-Custom", b"keep-alive, X-Custom"]),
    st.binary(max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v))
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=8)


def outcome(call):
    """A call's result with enums as their values, or the refusal it raised."""
    try:
        result = call()
    except (RequestRejected, ResponseRejected) as refused:
        return type(refused).__name__, refused.error.code, refused.error.status
    return tuple(int(part) if isinstance(part, int) else part for part in result)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(fields=FIELDS, trusted=st.booleans(),
       method=st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS"]))
def test_compiled_and_pure_rewrite_a_request_alike(fields, trusted, method):
    def rewrite(module):
        rewriter = module.RequestRewriter(proto="http", port=8080, request_ids=module.RequestIds(bytes),
                                          trusted=trusted)
        return lambda: rewriter.rewrite(method, b"/a?b=1", list(fields), b"10.0.0.9", 1_700_000)

    assert outcome(rewrite(router.headers)) == outcome(rewrite(HEADERS_TWIN))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(fields=FIELDS, status=st.sampled_from([100, 101, 200, 204, 304, 404, 421, 500, 666]),
       head=st.booleans(), http11=st.booleans(), keep_alive=st.booleans(),
       reason=st.sampled_from([None, b"", b"OK", b"Deliberate Phrase"]))
def test_compiled_and_pure_rewrite_a_response_alike(fields, status, head, http11, keep_alive,
                                                    reason):
    def rewrite(module):
        return lambda: module.rewrite_response(status, list(fields), head, http11, keep_alive,
                                               reason)

    assert outcome(rewrite(router.headers)) == outcome(rewrite(HEADERS_TWIN))


@settings(max_examples=200, deadline=None)
@given(path=st.binary(max_size=20), request_id=st.binary(max_size=12),
       numbers=st.tuples(*[st.integers(0, 5000)] * 4), wall=st.floats(1e9, 2e9))
def test_compiled_and_pure_write_the_same_log_line(path, request_id, numbers, wall):
    def line(module):
        sink = module.MemorySink()
        log = module.AccessLog(module.BufferedLogWriter([sink]))
        connect_ms, service_ms, status, nbytes = numbers
        log.info("app1", wall, b"GET", path, b"app1.localhost", request_id, b"10.0.0.9",
                 b"web.1", connect_ms, service_ms, status, nbytes)
        log.writer.flush()
        return sink.lines

    assert line(router.accesslog) == line(ACCESSLOG_TWIN)
