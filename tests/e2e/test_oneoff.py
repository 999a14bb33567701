"""One-off dynos and the release phase through `dynomesh up`, driven with the real CLI:
`dynomesh run` with and without a terminal (a real pty), Ctrl-C, exit statuses, `--detached`
into `dynomesh logs`, `ps`/`ps:stop`, `--timeout`, and `release:` gating each release."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from tests.conftest import dynomesh_argv
from tests.e2e.harness import EXAMPLES, copy_example, poll, write_app
from tests.e2e.test_platform import deployed, wait_web

pytestmark = pytest.mark.timeout(240)

STATUS = re.compile(r"Running `.*` on [a-z0-9-]+\.\.\. up, (run\.\d+)")


@pytest.fixture
def hello(platform, make_app, workdir):
    app = make_app("e2e-run")
    deployed(platform, app, copy_example("hello", workdir))
    wait_web(platform, app, 1)
    return app


def run(platform, app: str, *words: str, stdin: str = "", timeout: float = 60.0):
    return subprocess.run(dynomesh_argv("run", *words, "--app", app), env=platform.cli.env,
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def log_text(platform, app: str, *more: str) -> str:
    return platform.cli.ok("logs", "--app", app, "-n", "1500", *more)


class Terminal:
    """The real CLI on a real pseudo-terminal (its stdin and stdout are a tty, as in a shell)."""

    def __init__(self, platform, *argv: str, columns: int = 97, rows: int = 33) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: size its terminal, then become the CLI
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.execve(dynomesh_argv()[0], dynomesh_argv(*argv), platform.cli.env)
        self.output = b""

    def resize(self, columns: int, rows: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def read_until(self, pattern: bytes, timeout: float = 60.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} on the terminal: {self.output!r}")
            readable, _, _ = select.select([self.fd], [], [], left)
            if readable:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the CLI exited and closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the CLI ended before {pattern!r}: {self.output!r}")
                self.output += chunk
        return self.output

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def exit_status(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.fd], [], [], 0.5)
            if readable:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"the CLI did not exit: {self.output!r}")


def test_run_round_trips_stdin_stdout_stderr_and_the_exit_status(platform, hello):
    done = run(platform, hello, "cat; echo to-stderr >&2; exit 3", stdin="line one\nline two\n")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "line one\nline two\n"
    assert "to-stderr" in done.stderr and STATUS.search(done.stderr)
    platform.cli.ok("config:set", "GREETING=Howdy", "--app", hello)
    several = run(platform, hello, "python3", "-c", "import os; print(os.environ['GREETING'],"
                  " os.environ['DYNO'])")
    assert several.returncode == 0, several.stderr
    greeting, name = several.stdout.split()  # the current release's config, its own name
    assert greeting == "Howdy" and name == STATUS.search(several.stderr).group(1)
    with_env = run(platform, hello, "-e", "GREETING=Hej;EXTRA=1", "echo $GREETING $EXTRA")
    assert with_env.stdout == "Hej 1\n"
    # A stdin the event loop cannot watch (a file, /dev/null) is read to its end too.
    with open(__file__, "rb") as source:
        counted = subprocess.run(dynomesh_argv("run", "wc -c", "--app", hello),
                                 env=platform.cli.env, stdin=source, capture_output=True,
                                 text=True, timeout=60)
    assert counted.stdout.strip() == str(os.path.getsize(__file__)), counted.stderr
    # Each one ran once and is gone: a one-off that exits, 0 or not, is never restarted.
    assert not [d for d in platform.api.dynos(hello) if d["type"] == "run"]


def test_run_on_a_terminal_gets_a_pty_of_the_callers_size_and_its_status(platform, hello):
    term = Terminal(platform, "run", "tty; stty size; read answer; echo got\"-\"$answer; exit 4",
                    "--app", hello, columns=97, rows=33)
    term.read_until(rb"33 97")
    assert b"/dev/pts/" in term.output
    term.type(b"yes\r")
    term.read_until(rb"got-yes")
    assert term.exit_status() == 4


def test_a_resized_terminal_resizes_the_dynos(platform, hello):
    term = Terminal(platform, "run", "trap 'stty size; exit 0' WINCH; echo rea\"\"dy; "
                    "while :; do sleep 0.1; done", "--app", hello, columns=80, rows=24)
    term.read_until(rb"ready")
    term.resize(columns=120, rows=40)  # the kernel tells the CLI (SIGWINCH), which tells the dyno
    term.read_until(rb"40 120")
    assert term.exit_status() == 0


def test_ctrl_c_on_a_terminal_interrupts_the_command_on_the_dyno(platform, hello):
    # (The words are split in the command so that its echo on the terminal does not match.)
    term = Terminal(platform, "run", "trap 'echo caught\"-\"int; exit 7' INT; echo rea\"\"dy; "
                    "while :; do sleep 0.2; done", "--app", hello)
    term.read_until(rb"ready")
    term.type(b"\x03")  # the key: the dyno's own terminal makes it a SIGINT
    term.read_until(rb"caught-int")
    assert term.exit_status() == 7


def test_sigint_to_the_cli_without_a_terminal_reaches_the_process(platform, hello):
    cli = subprocess.Popen(dynomesh_argv("run", "trap 'echo caught-int; exit 9' INT; "
                                         "echo ready; while :; do sleep 0.2; done",
                                         "--app", hello),
                           env=platform.cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        assert cli.stdout.readline() == b"ready\n"
        cli.send_signal(signal.SIGINT)
        out, _ = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert b"caught-int" in out
    assert cli.returncode == 9


def test_run_detached_sends_its_output_to_the_logs(platform, hello):
    out = platform.cli.ok("run", "--detached", "echo detached-output; exit 0", "--app", hello)
    name = re.search(r"done, (run\.\d+) \(detached\)", out).group(1)
    poll(lambda: f"app[{name}]: detached-output" in log_text(platform, hello, "--dyno", name),
         "the detached dyno's output in the logs")
    poll(lambda: f"heroku[{name}]: State changed from up to down" in log_text(platform, hello),
         f"{name} to end")
    assert not [d for d in platform.api.dynos(hello) if d["name"] == name]


def test_ps_lists_a_one_off_and_ps_stop_ends_it_for_good(platform, hello):
    out = platform.cli.ok("run", "-d", "while :; do sleep 1; done", "--app", hello)
    name = re.search(r"done, (run\.\d+)", out).group(1)
    poll(lambda: any(d["name"] == name and d["state"] == "up"
                     for d in platform.api.dynos(hello)), f"{name} up")
    ps = platform.cli.ok("ps", "--app", hello)
    assert re.search(rf"^{re.escape(name)} +up ", ps, re.M), ps
    assert f"{name}: `while :; do sleep 1; done` (detached" in ps
    stopped = platform.cli.ok("ps:stop", name, "--app", hello)
    assert "it is not replaced" in stopped
    poll(lambda: not any(d["type"] == "run" for d in platform.api.dynos(hello)),
         f"{name} to go")
    poll(lambda: not [d for d in platform.agent_dynos(hello) if d["name"] == name],
         f"the dyno manager to stop {name}")


def test_timeout_ends_a_forgotten_one_off(platform, hello):
    out = platform.cli.ok("run", "-d", "--timeout", "2", "echo started; sleep 600",
                          "--app", hello)
    name = re.search(r"done, (run\.\d+)", out).group(1)
    poll(lambda: "it ran for its whole time limit (2 s)" in log_text(platform, hello, "--dyno",
                                                                   name),
         f"{name} to time out", timeout=60)
    poll(lambda: not any(d["name"] == name for d in platform.api.dynos(hello)), f"{name} gone")
    attached = run(platform, hello, "--timeout", "2", "sleep 600")
    assert attached.returncode == 143, attached.stderr  # SIGTERM, as the shell reports it


def test_a_web_process_that_exits_0_is_restarted(platform, make_app, workdir):
    app = make_app("e2e-exit0")
    source = write_app(workdir / "exit0", {"Procfile": "web: echo bye; exit 0\n"})
    deployed(platform, app, source)
    poll(lambda: any(d["name"] == "web.1" and d["restarts"] >= 1
                     for d in platform.api.dynos(app)), "web.1 restarted after exiting 0")


def release_app(workdir, name: str, release: str):
    """examples/hello's web process, with a release phase."""
    return write_app(workdir / name, {"web.py": (EXAMPLES / "hello" / "web.py").read_text(),
                                      "Procfile": f"web: python3 web.py\nrelease: {release}\n"})


def test_the_release_phase_runs_once_per_release_and_a_failing_one_blocks_it(
        platform, make_app, workdir):
    app = make_app("e2e-release")
    platform.cli.ok("config:set", "GREETING=Salut", "--app", app)  # v1: config, no code yet
    good = platform.cli.run("deploy", str(release_app(workdir, "v1", "echo migrating $GREETING")),
                            "--app", app)
    assert good.returncode == 0, good.stderr
    assert "Released v2 of e2e-release (succeeded)" in good.stdout
    assert "Running release command `echo migrating $GREETING`" in good.stderr
    assert "migrating Salut" in good.stderr and "Release phase succeeded" in good.stderr
    wait_web(platform, app, 1, release=2)
    starts = re.findall(r"heroku\[(release\.\d+)\]: Starting process",
                        log_text(platform, app))
    assert len(starts) == 1, starts  # once for the release, not restarted after exiting 0
    formation = platform.api.get(f"/apps/{app}/formation")
    assert [f["type"] for f in formation] == ["web"]
    refused = platform.cli.run("ps:scale", "release=1", "--app", app)
    assert refused.returncode == 1 and "never scaled" in refused.stderr

    # A config change is a new release too: its release phase runs, with the new value.
    changed = platform.cli.run("config:set", "GREETING=Hola", "--app", app)
    assert changed.returncode == 0, changed.stderr
    assert "done, v3" in changed.stdout and "migrating Hola" in changed.stderr
    wait_web(platform, app, 1, release=3)

    bad = platform.cli.run("deploy", str(release_app(workdir, "v2", "echo boom; exit 3")),
                           "--app", app)
    assert bad.returncode == 1
    assert "Released v4 of e2e-release (failed)" in bad.stdout
    assert "boom" in bad.stderr and "did not go live" in bad.stderr
    assert platform.router.get(app).status == 200  # v3 serves on
    assert all(d["release"]["version"] == 3 for d in platform.api.dynos(app))
    releases = platform.cli.ok("releases", "--app", app)
    assert re.search(r"^v4 +failed ", releases, re.M) and "v3 (current)" in releases
    assert "boom" in releases and "exited with status 3" in releases
