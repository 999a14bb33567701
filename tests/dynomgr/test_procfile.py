"""The Procfile parser."""

from __future__ import annotations

import pytest

from dynomgr.procfile import ProcfileError, parse_procfile

pytestmark = pytest.mark.unit


def test_types_and_commands_in_file_order():
    text = "web: gunicorn app:app --bind 0.0.0.0:$PORT\nworker:python worker.py\n"
    assert parse_procfile(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker": "python worker.py",
    }
    assert list(parse_procfile(text)) == ["web", "worker"]


def test_comments_blank_lines_crlf_and_spacing_are_tolerated():
    text = "# processes\r\n\r\n  web :  bundle exec puma  \r\nclock: ./clock.sh # every minute\n"
    assert parse_procfile(text) == {"web": "bundle exec puma", "clock": "./clock.sh # every minute"}


def test_commands_keep_colons_and_shell_syntax():
    text = "release: ./manage.py migrate && echo 'done: ok'\n"
    assert parse_procfile(text) == {"release": "./manage.py migrate && echo 'done: ok'"}


def test_type_names_allow_dashes_and_underscores():
    assert parse_procfile("worker-high_prio: run\n") == {"worker-high_prio": "run"}


def test_empty_procfile_has_no_types():
    assert parse_procfile("") == {}
    assert parse_procfile("# nothing yet\n") == {}


@pytest.mark.parametrize(
    "text, message",
    [
        ("web: ok\nthis is not a process\n", r"line 2: expected `<process type>: <command>`"),
        ("web:\n", r"line 1: process type 'web' has no command"),
        ("web: a\nweb: b\n", r"line 2: process type 'web' is defined twice"),
        ("we b: a\n", r"line 1"),
    ],
)
def test_bad_lines_are_errors_naming_the_line(text, message):
    with pytest.raises(ProcfileError, match=message):
        parse_procfile(text)
