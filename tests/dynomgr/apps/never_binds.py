"""A web dyno that never binds $PORT (R10)."""

import os
import signal

print(f"not binding {os.environ['PORT']} pid={os.getpid()}", flush=True)
signal.pause()
