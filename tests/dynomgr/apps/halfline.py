"""Writes a whole line and the start of the next, then waits for SIGUSR1 to end that line:
the agent reading it at that moment holds half a line."""

import os
import signal
import sys

signal.signal(signal.SIGUSR1, lambda *_: None)
sys.stdout.write(f"ready pid={os.getpid()}\nfirst half, ")
sys.stdout.flush()
signal.pause()
sys.stdout.write("second half\n")
sys.stdout.flush()
signal.pause()
