"""A worker dyno: says it works, then waits for a signal."""

import os
import signal

print(f"working pid={os.getpid()} uid={os.getuid()} dyno={os.environ['DYNO']}", flush=True)
signal.pause()
