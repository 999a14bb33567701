"""Name rules and the Procfile parser: pure functions, no I/O."""

from __future__ import annotations

import pytest

from controlplane import names, procfile
from controlplane.config import ControlConfig, parse_listen

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["abc", "hello-world", "a1-b2", "a" * 30])
def test_good_app_names(name):
    assert names.app_name(name) == name


@pytest.mark.parametrize("name", ["ab", "a" * 31, "Hello", "1app", "app-", "app_1", "", None])
def test_bad_app_names(name):
    with pytest.raises(names.InvalidName, match="3-30 lowercase"):
        names.app_name(name)


@pytest.mark.parametrize("raw, expected", [
    ("WWW.Example.COM.", "www.example.com"), ("*.example.test", "*.example.test"),
    ("a-b.c-d.test", "a-b.c-d.test"), ("xn--bcher-kva.example", "xn--bcher-kva.example")])
def test_good_hostnames_are_normalised(raw, expected):
    assert names.hostname(raw) == expected


@pytest.mark.parametrize("raw", ["example", "-a.test", "a-.test", "a..test", "*.*.test",
                                 "a.*.test", "a b.test", "é.test", "1.2.3.4", "x" * 64 + ".test",
                                 ("a" * 60 + ".") * 5 + "test"])
def test_bad_hostnames(raw):
    with pytest.raises(names.InvalidName):
        names.hostname(raw)


def test_wildcards_can_be_refused():
    with pytest.raises(names.InvalidName, match="wildcards"):
        names.hostname("*.example.test", allow_wildcard=False)


@pytest.mark.parametrize("key, good", [("GREETING", True), ("a_1", True), ("A-B", False),
                                       ("", False), ("É", False)])
def test_config_keys(key, good):
    if good:
        assert names.config_key(key) == key
    else:
        with pytest.raises(names.InvalidName):
            names.config_key(key)


def test_procfile_keeps_order_and_skips_comments():
    text = "# processes\n\nweb: python web.py --port $PORT\nworker:python worker.py\n"
    assert procfile.parse(text) == {"web": "python web.py --port $PORT",
                                    "worker": "python worker.py"}


@pytest.mark.parametrize("text, message", [
    ("web python web.py", "line 1: expected 'type: command'"),
    ("web:", "has no command"),
    ("web: a\nweb: b", "appears twice"),
    ("we b: x", "invalid process type"),
    ("", "names no process types"),
])
def test_bad_procfiles_name_the_line_and_the_problem(text, message):
    with pytest.raises(procfile.ProcfileError, match=message):
        procfile.parse(text)


def test_procfile_must_be_small_utf8():
    with pytest.raises(procfile.ProcfileError, match="UTF-8"):
        procfile.parse_bytes(b"web: \xff")
    with pytest.raises(procfile.ProcfileError, match="larger"):
        procfile.parse_bytes(b"#" * (procfile.MAX_BYTES + 1))


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:5050", ("127.0.0.1", 5050)), ("5051", ("127.0.0.1", 5051)),
    ("[::1]:80", ("::1", 80)), ("0.0.0.0:0", ("0.0.0.0", 0))])
def test_listen_addresses(text, expected):
    assert parse_listen(text) == expected


def test_bad_listen_addresses_and_config_are_refused(tmp_path):
    for text in ("host:port", "1:99999"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(text)
    with pytest.raises(ValueError):
        ControlConfig(home=tmp_path, base_domain="not a domain")
    with pytest.raises(ValueError):
        ControlConfig(home=tmp_path, change_history=10)


def test_the_cli_reaches_a_control_plane_listening_everywhere_over_loopback(tmp_path):
    assert ControlConfig(home=tmp_path, listen_host="0.0.0.0").api_url(5050) == \
        "http://127.0.0.1:5050"
    assert ControlConfig(home=tmp_path, listen_host="::").api_url(5050) == "http://[::1]:5050"
    assert ControlConfig(home=tmp_path, router_port=80).app_url("hello") == \
        "http://hello.localhost/"


def test_a_drain_ca_file_that_is_not_pem_certificates_is_refused_saying_so(tmp_path):
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a not a PEM certificate")
    with pytest.raises(ValueError, match=r"--drain-ca-file .*ca\.der: not PEM CA certificates"
                                         r" \(.+\): give a file of one or more -----BEGIN"):
        ControlConfig(home=tmp_path, drain_ca_file=tmp_path / "ca.der")
