"""Ignores SIGTERM (R12)."""

import os
import signal


def ignore(signum, frame):
    os.write(1, b"ignoring SIGTERM\n")  # not print(): the signal may land inside a print


signal.signal(signal.SIGTERM, ignore)
print(f"stubborn pid={os.getpid()}", flush=True)
while True:
    signal.pause()
