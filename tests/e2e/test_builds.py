"""Deploying Python apps from source through `dynomesh up`: the platform builds them with real
pip against the test wheelhouse on loopback (tests/wheelindex.py) and they answer through the
router; a failed build leaves the previous release serving; a rebuild reuses the cache; a
dyno's PATH holds nothing its user cannot use, and `python` resolves for it."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import copy_example, poll, write_app
from tests.wheelindex import require_wheels

pytestmark = pytest.mark.timeout(600)

BUILD_TIMEOUT = 400.0  # a cold build on a loaded 2-core machine; the platform's limit is 15 min

DJANGO_APP = {
    "Procfile": "web: gunicorn --bind 0.0.0.0:$PORT site_app:application\n",
    "requirements.txt": "django==5.2.17\ngunicorn==26.2.0\n",
    "site_app.py": '''\
"""A Django project in one file: settings, one view, the WSGI application."""
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import path

settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
                   SECRET_KEY="test-only", MIDDLEWARE=[])


def hello(request):
    return HttpResponse(f"Hello from Django on {os.environ['DYNO']}\\n")


urlpatterns = [path("", hello)]
application = get_wsgi_application()
''',
}

STDLIB_APP = {
    # `python`, not `python3`: the stack's bin gives dynos both.
    "Procfile": "web: python web.py\n",
    "web.py": '''\
import http.server, json, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.environ["PATH"].split(":")
        body = json.dumps({"executable": sys.executable, "path": path, "uid": os.getuid(),
                           "interpreter": os.path.realpath(sys.executable),
                           "unusable": [d for d in path
                                        if not os.access(d, os.R_OK | os.X_OK)]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
''',
}


@pytest.fixture(autouse=True)
def wheels():
    require_wheels()


def deploy(platform, directory, app):
    return platform.cli.run("deploy", str(directory), "--app", app, timeout=BUILD_TIMEOUT)


def answer(platform, app, text):
    return poll(lambda: platform.router.answers(app, lambda r: r.status == 200 and text in r.text),
                f"{app} to answer {text!r}", timeout=90)


def test_a_flask_app_builds_from_source_answers_and_survives_a_failed_build(
        platform, make_app, workdir):
    app = make_app("pyflask")
    source = copy_example("flask", workdir)
    done = deploy(platform, source, app)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "-----> Python app detected"
    assert "-----> Installing requirements with pip" in lines
    assert any(line.startswith("       Successfully installed") for line in lines)
    assert lines[-1].startswith("Released v1 of pyflask (succeeded)")
    answer(platform, app, "Hello from Flask on web.1")
    runtime = json.loads(platform.router.get(app, "/runtime").text)
    assert runtime["unusable"] == [] and runtime["uid"] != 0
    assert runtime["path"][0].endswith("/.venv/bin") and runtime["prefix"].endswith("/.venv")
    assert not any(d.startswith("/root") for d in runtime["path"])

    # A requirement pip cannot find: no release, exit non-zero, the reason last.
    (source / "requirements.txt").write_text("flask==99\ngunicorn==26.2.0\n")
    failed = deploy(platform, source, app)
    assert failed.returncode != 0
    assert failed.stdout.splitlines()[-1] == " !     Build failed: pip could not find flask==99"
    assert "Traceback" not in failed.stdout + failed.stderr
    assert "pip could not find flask==99" in failed.stderr.splitlines()[-1]
    releases = platform.cli.json("releases", "--app", app)
    assert [r["version"] for r in releases] == [1]
    assert "Hello from Flask on web.1" in platform.router.get(app).text
    builds = platform.cli.json("builds", "--app", app)
    assert [(b["number"], b["status"], b["reason"]) for b in builds] == [
        (2, "failed", "pip could not find flask==99"), (1, "succeeded", None)]
    replay = platform.cli.ok("builds:output", "2", "--app", app)
    assert replay.splitlines()[-1] == " !     Build failed: pip could not find flask==99"

    # The same requirements again: pip finds everything already there.
    (source / "requirements.txt").write_text("flask==3.1.3\ngunicorn==26.2.0\n")
    again = deploy(platform, source, app)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "-----> Reusing the virtualenv of the last build (same Python, same requirements)" \
        in again.stdout.splitlines()
    assert "Requirement already satisfied: flask==3.1.3" in again.stdout
    assert "Downloading" not in again.stdout
    assert again.stdout.splitlines()[-1].startswith("Released v2 of pyflask")


def test_a_django_app_builds_from_source_and_answers(platform, make_app, workdir):
    app = make_app("pydjango")
    source = write_app(workdir / "django", DJANGO_APP)
    done = deploy(platform, source, app)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "django-5.2.17" in done.stdout
    answer(platform, app, "Hello from Django on web.1")


def test_python_resolves_for_a_dynos_user_and_path_holds_only_what_it_can_use(
        platform, make_app, workdir):
    app = make_app("pyplain")
    done = deploy(platform, write_app(workdir / "plain", STDLIB_APP), app)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No buildpack detected" in done.stdout
    seen = poll(lambda: platform.router.answers(app, lambda r: r.status == 200),
                "the stdlib app to answer", timeout=90)
    runtime = json.loads(seen.text)
    assert runtime["unusable"] == [] and runtime["uid"] != 0
    # `python` is the stack's link to its interpreter, found first: no .venv or bin/ here.
    assert runtime["path"][0].endswith("/stack/bin")
    assert runtime["executable"] == runtime["path"][0] + "/python"
    assert runtime["interpreter"].startswith("/usr/")
    stack = platform.cli.json("stack")
    offered = {i["path"] for vm in stack for i in vm["interpreters"]}
    assert offered and all(path.startswith("/usr/") for path in offered)
