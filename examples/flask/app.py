"""A Flask app served by gunicorn: `dynomesh deploy` installs requirements.txt into a virtualenv
in the slug (the Python buildpack), and its `bin/` is first on the dyno's PATH."""

import os
import sys

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return f"Hello from Flask on {os.environ.get('DYNO', 'a laptop')}\n"


@app.get("/runtime")
def runtime():
    """What the dyno runs on: its interpreter and PATH (each entry readable by this user?)."""
    path = os.environ.get("PATH", "")
    return {"python": sys.version.split()[0], "executable": sys.executable, "prefix": sys.prefix,
            "path": path.split(":"), "uid": os.getuid(),
            "unusable": [d for d in path.split(":") if not os.access(d, os.R_OK | os.X_OK)]}
