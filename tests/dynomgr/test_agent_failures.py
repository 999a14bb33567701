"""Boot timeouts, crash loops and bad input: each a clear line, and the other dynos carry on."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from tests.conftest import dynomesh_argv, dynomesh_env
from tests.dynomgr.conftest import http_json, pid_alive


def test_a_web_dyno_that_never_binds_gets_r10_sigkill_and_crashes(harness):
    slug = harness.slugs.make("web: python never_binds.py\n")
    harness.write(harness.dyno("web.1", slug))
    agent = harness.start(flags={"--boot-timeout": "1", "--restart-base": "30", "--restart-cap": "30"})
    pid = int(agent.wait_for(r"hello app\[web\.1\]: not binding \d+ pid=(\d+)").group(1))
    r10 = agent.wait_for(r"hello heroku\[web\.1\]: Error R10 \(Boot timeout\) -> Web process failed to bind to \$PORT within 1 seconds of launch")
    assert r10
    agent.wait_for(r"heroku\[web\.1\]: Stopping process with SIGKILL")
    agent.wait_for(r"heroku\[web\.1\]: Process exited with status 137")
    agent.wait_for(r"heroku\[web\.1\]: State changed from starting to crashed")
    assert not pid_alive(pid)
    # First restart at once (then the 30 s back-off would follow).
    agent.wait_for(r"heroku\[web\.1\]: State changed from crashed to starting")
    assert agent.metric("dynomgr_dyno_errors_total", code="R10") >= 1


def test_a_crash_at_boot_restarts_at_once_then_backs_off_and_never_gives_up(harness):
    slug = harness.slugs.make("web: python crash.py\n")
    harness.write(harness.dyno("web.1", slug))
    agent = harness.start(flags={"--restart-base": "0.2", "--restart-cap": "0.4"})
    agent.wait_for(r"hello app\[web\.1\]: boom: cannot connect to the database")
    agent.wait_for(r"heroku\[web\.1\]: Process exited with status 1$")
    agent.wait_for(r"heroku\[web\.1\]: State changed from starting to crashed")
    # Keeps going: a fifth start means four restarts, with back-off up to the cap.
    mark = 0
    for _ in range(5):
        _, mark = agent.wait_line(r"heroku\[web\.1\]: Starting process", after=mark)
    assert agent.metric("dynomgr_dyno_restarts_total", app="hello", type="web") >= 4
    assert agent.dynos()["hello web.1"]["restarts"] >= 4


def test_an_exit_with_status_0_is_a_crash_too(harness):
    slug = harness.slugs.make("worker: echo finished\n")
    harness.write(harness.dyno("worker.1", slug))
    agent = harness.start()
    agent.wait_for(r"app\[worker\.1\]: finished")
    agent.wait_for(r"heroku\[worker\.1\]: Process exited with status 0")
    agent.wait_for(r"heroku\[worker\.1\]: State changed from up to crashed")
    agent.wait_for(r"heroku\[worker\.1\]: State changed from crashed to starting")


def bad_slug_cases(harness):
    good = harness.slugs.make("web: python web.py\n")
    no_type = harness.slugs.make("web: python web.py\n")
    no_procfile = harness.slugs.make(None)
    bad_procfile = harness.slugs.make("web python web.py\n")
    corrupt = harness.slugs.raw(b"this is not a gzipped tar")
    missing = {"url": f"file://{harness.root}/nowhere.tgz", "sha256": "0" * 64}
    tampered = dict(good, sha256="1" * 64)
    return good, {
        "worker.1": (no_type, r"Error: unknown process type 'worker': the Procfile of hello v1 defines web$"),
        "web.2": (no_procfile, r"Error: the slug of hello v1 has no Procfile at its root$"),
        "web.3": (bad_procfile, r"Error: Procfile line 1: expected `<process type>: <command>`, got 'web \S+ web\.py' \(slug of hello v1\)$"),
        "web.4": (corrupt, r"Error R17 \(Checksum error\) -> slug file://\S+raw-\d+\.tgz is not a readable \.tar\.gz"),
        "web.5": (missing, r"Error R17 \(Checksum error\) -> slug file://\S+/nowhere\.tgz not found$"),
        "web.6": (tampered, r"Error R17 \(Checksum error\) -> slug file://\S+ has SHA-256 [0-9a-f]{12}…, expected 111111111111…$"),
    }


def test_bad_slugs_and_procfiles_are_one_line_each_and_the_good_dyno_runs(harness):
    good, cases = bad_slug_cases(harness)
    harness.write(harness.dyno("web.1", good), *(harness.dyno(name, slug) for name, (slug, _) in cases.items()))
    agent = harness.start(flags={"--restart-base": "30", "--restart-cap": "30"})
    address = agent.wait_up("web.1")
    assert http_json(address)["dyno"] == "web.1"
    for name, (_, message) in cases.items():
        agent.wait_for(rf"hello heroku\[{re.escape(name)}\]: " + message)
        agent.wait_for(rf"hello heroku\[{re.escape(name)}\]: State changed from starting to crashed")
    states = agent.dynos()
    assert states["hello web.1"]["state"] == "up"
    assert {states[f"hello {n}"]["state"] for n in cases} == {"crashed"}
    assert agent.metric("dynomgr_dyno_errors_total", code="R17") >= 3


def test_a_procfile_error_waits_for_a_new_release_instead_of_retrying(harness):
    no_worker = harness.slugs.make("web: python web.py\n")
    harness.write(harness.dyno("worker.1", no_worker))
    agent = harness.start(flags={"--restart-base": "0.05", "--restart-cap": "0.05"})
    agent.wait_for(r"heroku\[worker\.1\]: State changed from starting to crashed")
    fixed = harness.slugs.make("web: python web.py\nworker: python worker.py\n")
    mark = agent.mark()
    harness.write(harness.dyno("worker.1", fixed, release=2))
    agent.signal(signal.SIGHUP)
    agent.wait_for(r"hello heroku\[worker\.1\]: State changed from starting to up", after=mark)
    # No retry of release 1 happened between the error and the new release.
    assert agent.count(r"heroku\[worker\.1\]: Error: unknown process type") == 1


def test_bad_entries_in_the_file_are_one_line_each_and_the_rest_run(harness):
    slug = harness.slugs.make("web: python web.py\n")
    harness.write(
        harness.dyno("web.1", slug),
        harness.dyno("web.2", slug, kind="batch"),
        harness.dyno("web.3", dict(slug, url="s3://bucket/slug.tgz")),
        {"name": "web.4"},
    )
    agent = harness.start()
    agent.wait_up("web.1")
    agent.wait_for(r"dynomgr: error: assignments file \S+: dynos\[1\] \(hello web\.2\): unknown kind 'batch'", stream="err")
    agent.wait_for(r"dynomgr: error: assignments file \S+: dynos\[2\] \(hello web\.3\): slug url scheme s3:// is not supported", stream="err")
    agent.wait_for(r"dynomgr: error: assignments file \S+: dynos\[3\]: app must be a non-empty string", stream="err")
    assert set(agent.dynos()) == {"hello web.1"}


def run_agent_once(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(dynomesh_argv("dynomgr", *args), env=dynomesh_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"assignments file \S+/assignments\.json: no such file$"),
        ('{"dynos": [', r"assignments file \S+: not valid JSON: Expecting value at line 1 column 12$"),
        ('{"apps": []}', r'assignments file \S+: expected a JSON object with a "dynos" list$'),
    ],
)
def test_a_bad_assignments_file_at_start_is_one_error_and_exit_status_2(harness, content, message):
    if content is not None:
        harness.assignments.write_text(content)
    result = run_agent_once("--assignments", str(harness.assignments), "--data-dir", str(harness.data_dir), "--admin", "off")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and re.search(message, errors[0]), result.stderr


def test_an_unusable_data_dir_is_one_error_naming_it(harness):
    harness.write()
    blocker = harness.root / "a-file"
    blocker.write_text("not a directory")
    result = run_agent_once("--assignments", str(harness.assignments), "--data-dir", str(blocker / "data"), "--admin", "off")
    assert result.returncode == 2
    assert re.search(rf"dynomgr: error: data dir {re.escape(str(blocker))}/data is unusable: {re.escape(str(blocker))} is not a directory$", result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_second_agent_on_the_same_data_dir_is_refused(harness):
    harness.write()
    first = harness.start()
    first.wait_for(r"dynomgr: running 0 dynos", stream="err")
    result = run_agent_once("--assignments", str(harness.assignments), "--data-dir", str(harness.data_dir), "--admin", "off")
    assert result.returncode == 2
    assert f"data dir {harness.data_dir} is in use by another dyno manager (pid {first.proc.pid})" in result.stderr


def test_bad_command_line_values_are_refused_with_the_reason(harness):
    result = run_agent_once("--assignments", "x.json", "--boot-timeout", "0")
    assert result.returncode == 2
    assert "boot timeout must be > 0 seconds" in result.stderr
    result = run_agent_once("--assignments", "x.json", "--port-range", "30000")
    assert result.returncode == 2 and "port range must look like 20000-29999" in result.stderr


def test_help_teaches_with_an_example():
    result = run_agent_once("--help")
    assert result.returncode == 0
    assert "example:" in result.stdout and "kill -HUP" in result.stdout and "--boot-timeout" in result.stdout
