from datetime import datetime

from dynomesh import logline
import pytest

pytestmark = pytest.mark.unit


def test_timestamp_is_rfc5424_utc_with_microseconds():
    assert logline.rfc5424_timestamp(0) == "1970-01-01T00:00:00.000000+00:00"
    stamp = logline.rfc5424_timestamp(1_795_000_000.123456)
    assert stamp.endswith("+00:00") and len(stamp.split(".")[1]) == len("123456+00:00")
    assert datetime.fromisoformat(stamp).timestamp() == 1_795_000_000.123456


def test_logfmt_leaves_simple_values_bare_and_quotes_the_rest():
    text = logline.logfmt([("at", "info"), ("status", 200), ("desc", "Request timeout"), ("x", "")])
    assert text == 'at=info status=200 desc="Request timeout" x=""'


def test_logfmt_always_quotes_named_keys_like_herokus_router():
    text = logline.logfmt([("path", "/"), ("fwd", "127.0.0.1")], quoted=("path", "fwd"))
    assert text == 'path="/" fwd="127.0.0.1"'


def test_logfmt_escapes_quotes_backslashes_and_control_characters():
    assert logline.value('a"b\\c') == '"a\\"b\\\\c"'
    assert logline.value("a\nb\x00") == '"a\\nb\\x00"'


def test_line_has_timestamp_source_and_process():
    assert logline.line("heroku", "web.1", "State changed from starting to up", at=0) == (
        "1970-01-01T00:00:00.000000+00:00 heroku[web.1]: State changed from starting to up"
    )
