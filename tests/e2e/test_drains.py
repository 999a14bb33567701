"""A log drain on the whole platform: a request through the router, the dyno's output and the
control plane's lines reach a syslog receiver as Heroku's drains send them."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

from tests.drainreceivers import SyslogReceiver
from tests.e2e.harness import copy_example, poll
from tests.e2e.test_platform import deployed, wait_web


class ThreadedReceiver:
    """A SyslogReceiver on its own event loop in a thread (the e2e tests are synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.receiver = self._call(SyslogReceiver().start())

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def messages(self) -> list[str]:
        return [m.decode() for m in list(self.receiver.messages)]

    def close(self) -> None:
        self._call(self.receiver.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def receiver():
    made = ThreadedReceiver()
    yield made
    made.close()


def test_a_drain_gets_the_routers_the_dynos_and_the_platforms_lines(platform, make_app,
                                                                     workdir, receiver):
    app = make_app("e2e-drain")
    added = platform.cli.ok("drains:add", receiver.receiver.url, "--app", app)
    assert added.startswith(f"Successfully added drain {receiver.receiver.url} to {app} (d.")
    token = re.escape(re.search(r"\((d\.[0-9a-f-]{36})\)", added).group(1))
    deployed(platform, app, copy_example("hello", workdir))
    wait_web(platform, app, 1)
    assert platform.router.get(app, "/through-the-drain").status == 200
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00"
    wanted = {
        "deploy": rf"<134>1 {stamp} {token} heroku api - Deploy \w+ by .+\n",
        "state": rf"<134>1 {stamp} {token} heroku web\.1 - State changed from starting to up\n",
        "output": rf"<190>1 {stamp} {token} app web\.1 - web\.1 listening on port \d+\n",
        "router": rf'<158>1 {stamp} {token} heroku router - at=info method=GET '
                  rf'path="/through-the-drain" host={app}\.localhost(:\d+)? .*status=200 .*\n',
    }

    def arrived():
        got = receiver.messages()
        missing = {name for name, pattern in wanted.items()
                   if not any(re.fullmatch(pattern, m, re.S) for m in got)}
        return not missing or None

    try:
        poll(arrived, "the router's, the dyno's and the platform's lines at the drain",
             timeout=60)
    except AssertionError:
        raise AssertionError(f"the drain got: {receiver.messages()}") from None
    listed = platform.cli.ok("drains", "--app", app)
    assert receiver.receiver.url in listed
