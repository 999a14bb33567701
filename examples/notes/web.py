"""Notes kept in the app's PostgreSQL add-on: `dynomesh addons:create postgresql` gives the app
its DATABASE_URL, and this web process reads and writes through it.

    curl -d 'buy milk' http://notes.localhost:8080/notes    # 201, stored
    curl http://notes.localhost:8080/notes                  # every note, one a line

Standard library only: a dyno runs the system's python3, without asyncpg or psycopg, so the
app talks to PostgreSQL through `psql` (the PostgreSQL client), one call per request. The
password goes to psql in its environment (PGPASSWORD), never on a command line that other
users of the machine could read in `ps`.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit, urlunsplit

DYNO = os.environ.get("DYNO", "web.?")
MAX_NOTE = 10_000  # bytes


def find_psql():
    found = shutil.which("psql")
    if found:
        return found
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"),
                       key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return installed[-1] if installed else None


def connection():
    """(the URL without its password, an environment holding the password) or None."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return None
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = f"{parts.username}@{parts.netloc.rpartition('@')[2]}"
        url = urlunsplit(parts._replace(netloc=netloc))
    return url, env


def psql(sql, **variables):
    """Run `sql` (its :'name' placeholders quoted by psql) and return the rows, one a line."""
    url, env = connection()
    argv = [find_psql(), url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    for name, value in variables.items():
        argv += ["-v", f"{name}={value}"]
    done = subprocess.run(argv, input=sql, env=env, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"psql exited {done.returncode}")
    return done.stdout


class Notes(BaseHTTPRequestHandler):
    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def ready(self):
        if connection() is None:
            self.answer(503, "no DATABASE_URL: run `dynomesh addons:create postgresql`\n")
            return False
        if find_psql() is None:
            self.answer(503, "psql is not installed on this machine\n")
            return False
        return True

    def do_GET(self):
        if self.path != "/notes":
            return self.answer(404, "try GET or POST /notes\n")
        if self.ready():
            rows = psql("SELECT body FROM notes ORDER BY id;")
            self.answer(200, rows)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/notes" or not 0 < length <= MAX_NOTE:
            return self.answer(400, f"POST /notes with a note of 1 to {MAX_NOTE} bytes\n")
        note = self.rfile.read(length).decode("utf-8", "replace").replace("\n", " ")
        if self.ready():
            psql("INSERT INTO notes (body) VALUES (:'note');", note=note)
            self.answer(201, f"stored by {DYNO}\n")

    def log_message(self, format, *args):
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def create_table():
    """The schema, once per start (a Procfile `release:` phase would be its place on Heroku). A
    database that cannot be reached now fails the start: the dyno manager restarts the dyno."""
    if connection() is not None and find_psql() is not None:
        psql("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text);")


def main():
    create_table()
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Notes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{DYNO} listening on port {port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
