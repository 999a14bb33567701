"""The test tiers, and a guard that keeps the `unit` tier honest.

Every test gets exactly one tier (tests/conftest.py): `unit` when its module or function says so
(a module marks its tier as a whole or leaves it to each test, never both),
`e2e` under tests/e2e/ and for the whole-platform tests beside it, `functional` otherwise; and
`postgres` when it runs against the PostgreSQL server. `pytest -m unit` is the fast loop.

A `unit` test must not open a socket or start a process. The guard turns each way of doing so
into a failure that names the rule, so a unit marker cannot hide I/O: Python-level sockets and
processes through an audit hook (it sees asyncio's default loop and `subprocess`), and uvloop's
own connections, servers and subprocesses through its `Loop` class.
"""

from __future__ import annotations

import sys
from pathlib import Path

TIERS = ("unit", "functional", "e2e")
# Whole-platform tests that live beside the components' tests.
E2E_MODULES = {"test_up.py", "test_up_logs.py", "test_examples.py", "test_examples_streams.py"}

_AUDITED = {"socket.bind", "socket.connect", "subprocess.Popen", "os.system", "os.exec",
            "os.posix_spawn", "os.fork"}
_LOOP_METHODS = ("create_connection", "create_server", "create_unix_connection",
                 "create_unix_server", "subprocess_exec", "subprocess_shell")


class ImpureUnitTest(AssertionError):
    pass


def _refuse(what: str) -> None:
    raise ImpureUnitTest(f"a unit test may not use {what}: mark the test `functional` (it does "
                         f"I/O) or keep the I/O out of it")


class PurityGuard:
    """Refuses sockets and processes while `active`."""

    def __init__(self) -> None:
        self.active = False
        sys.addaudithook(self._audit)  # hooks cannot be removed: it checks `active` instead
        self._guard_uvloop()

    def _audit(self, event: str, args: tuple) -> None:
        if self.active and event in _AUDITED:
            self.active = False  # the failure's own reporting may need what was refused
            _refuse(event)

    def _guard_uvloop(self) -> None:
        try:
            import uvloop
        except ImportError:
            return
        for name in _LOOP_METHODS:
            original = getattr(uvloop.Loop, name)

            def guarded(loop, *args, __original=original, __name=name, **kwargs):
                if self.active:
                    self.active = False
                    _refuse(f"loop.{__name}")
                return __original(loop, *args, **kwargs)
            setattr(uvloop.Loop, name, guarded)


def tier_of(item) -> str:
    for marker in item.iter_markers():  # closest first: a test's own marker beats its module's
        if marker.name in TIERS:
            return marker.name
    path = Path(str(item.fspath))
    if "e2e" in path.parts or path.name in E2E_MODULES:
        return "e2e"
    return "functional"


def uses_postgres(item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    if names & {"postgres_server_url", "postgres_url", "addons_server"}:
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("database_url") == "postgresql"
