"""The log stream's pure parts: the POST /logs body, filters, and one tail's bounded share."""

from __future__ import annotations

import pytest

from controlplane.logs.lines import LogFilter, Rendered, allowed_for, parse_body, plain
from controlplane.logs.tail import Tail
from controlplane.store.logs import LogEntry, by_time
from controlplane.store.models import Role

pytestmark = pytest.mark.unit

AT = "2026-11-26T12:00:00.123456+00:00"


def entry(seq: int, process: str = "web.1", source: str = "app", text: str = "",
          at: str = AT) -> LogEntry:
    return LogEntry(seq, at, source, process, text or f"line {seq}")


def test_a_body_is_app_sections_of_heroku_lines():
    body = (f"@hello\n{AT} app[web.1]: listening on 5000\n"
            f"{AT} heroku[web.1]: State changed from starting to up\r\n"
            f"@other\n{AT} app[worker.1]:\n"
            f"@hello\n{AT} app[web.1]: again\n").encode()
    parsed = parse_body(body, allowed_for(Role.DYNOMGR))
    assert parsed.count == 4 and parsed.rejected == 0
    assert [(line.source, line.process, line.text) for line in parsed.lines["hello"]] == [
        ("app", "web.1", "listening on 5000"),
        ("heroku", "web.1", "State changed from starting to up"), ("app", "web.1", "again")]
    assert parsed.lines["other"][0].text == "" and parsed.lines["other"][0].at == AT


@pytest.mark.parametrize("raw, why", [
    (f"{AT} app[web.1]: no app line", "no @APP line"),
    ("2026-11-26T12:00:00+00:00 app[web.1]: x", "RFC 5424"),
    ("2026-11-26T12:00:00.123456Z app[web.1]: x", "RFC 5424"),
    (f"{AT} app web.1: x", "source[process]"),
    (f"{AT} dyno[web.1]: x", "not app or heroku"),
    (f"{AT} app[web 1]: x", "invalid process name"),
    (f"{AT} app[web.1]: " + "x" * 40_000, "longer than"),
])
def test_a_bad_line_is_refused_with_a_reason(raw, why):
    body = raw.encode() if "no app line" in raw else b"@hello\n" + raw.encode()
    parsed = parse_body(body, allowed_for(Role.DYNOMGR))
    assert parsed.count == 0 and parsed.rejected == 1 and why in parsed.errors[0]


def test_roles_speak_only_for_their_own_lines():
    router, dynomgr = allowed_for(Role.ROUTER), allowed_for(Role.DYNOMGR)
    assert router("heroku", "router") is None and router("heroku", "logs") is None
    assert router("app", "web.1") is not None and router("heroku", "web.1") is not None
    assert dynomgr("app", "web.1") is None and dynomgr("heroku", "worker.2") is None
    assert dynomgr("heroku", "router") is not None and dynomgr("heroku", "api") is not None
    with pytest.raises(ValueError):
        allowed_for(Role.USER)


def test_a_dyno_filter_names_a_dyno_a_process_type_or_a_platform_process():
    web = LogFilter(dyno="web")
    assert web.matches(entry(1, "web.1")) and web.matches(entry(2, "web.12"))
    assert not web.matches(entry(3, "webby.1")) and not web.matches(entry(4, "worker.1"))
    assert LogFilter(dyno="web.1").matches(entry(1, "web.1"))
    assert not LogFilter(dyno="web.1").matches(entry(1, "web.10"))
    assert LogFilter(dyno="router", source="heroku").matches(entry(1, "router", "heroku"))
    assert not LogFilter(source="app").matches(entry(1, "router", "heroku"))
    assert LogFilter().everything
    with pytest.raises(ValueError):
        LogFilter(source="system")


def test_lines_show_as_herokus_and_sort_by_time_then_by_arrival():
    assert plain(entry(1, text="listening")) == f"{AT} app[web.1]: listening\n".encode()
    late = entry(1, at="2026-11-26T12:00:01.000000+00:00")
    early = entry(2, at="2026-11-26T12:00:00.500000+00:00")
    same = entry(3, at="2026-11-26T12:00:00.500000+00:00")
    assert by_time([late, same, early]) == [early, same, late]
    rendered = Rendered([early])
    assert rendered.lines(True) is rendered.lines(True)  # rendered once for every tail


async def test_a_tail_shows_only_what_came_after_its_history_and_matches_its_filter():
    tail = Tail("app", LogFilter(dyno="web.1"), json_format=False, limit=100)
    tail.deliver(Rendered([entry(4), entry(5, "web.2"), entry(6)]))  # while history is read
    tail.start(after=4)
    tail.deliver(Rendered([entry(7), entry(6)]))  # a repeat is not shown twice
    assert tail.take() == plain(entry(6)) + plain(entry(7))
    tail.deliver(Rendered([entry(8, "web.2")]))  # nothing it shows
    assert not await tail.wait(0.01)  # and no spinning on it


def test_a_tail_too_far_behind_is_cut_off_and_told_how_far():
    cuts = []
    tail = Tail("app", LogFilter(), json_format=True, limit=3, on_cut=lambda: cuts.append(1))
    tail.start(after=0)
    tail.deliver(Rendered([entry(1), entry(2), entry(3), entry(4)]))  # one delivery may pass it
    assert not tail.cut and len(tail.pending) == 4
    tail.deliver(Rendered([entry(5)]))
    assert tail.cut and tail.behind == 5 and not tail.pending and cuts == [1]
    tail.deliver(Rendered([entry(6)]))
    assert not tail.pending and cuts == [1]
