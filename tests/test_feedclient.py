"""The feed transport both followers share: settings, URLs and token files."""

from __future__ import annotations

import pytest

from dynomesh.feedclient import FeedSettings, parse_control_urls, read_token_file

pytestmark = pytest.mark.unit


def test_settings_are_checked():
    with pytest.raises(ValueError, match="dead after"):
        FeedSettings(dead_after=0)
    with pytest.raises(ValueError, match="connect timeout"):
        FeedSettings(connect_timeout=0)


def test_control_urls_are_a_comma_separated_list_of_base_urls():
    assert parse_control_urls("http://10.0.0.1:5050/, https://cp.example.test,http://10.0.0.1:5050") == (
        "http://10.0.0.1:5050", "https://cp.example.test")
    for bad, words in (("10.0.0.1:5050", "not an http"), ("ftp://x", "not an http"),
                       ("http://x:port", "invalid port"), ("http://x/?a=1", "without a query"),
                       (" , ", "at least one")):
        with pytest.raises(ValueError, match=words):
            parse_control_urls(bad)


def test_a_token_file_holds_one_token(tmp_path):
    path = tmp_path / "router.token"
    path.write_text("dmt_abc\n")
    assert read_token_file(path) == "dmt_abc"
    path.write_text("dmt_abc dmt_def\n")
    with pytest.raises(ValueError, match="one token"):
        read_token_file(path)
    with pytest.raises(ValueError, match="does not exist.*tokens:create"):
        read_token_file(tmp_path / "missing")
