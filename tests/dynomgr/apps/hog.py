"""Eats memory: grows by $STEP_MB every $STEP_SECONDS up to $MAX_MB, then holds it. With
GROW_ON_SIGNAL=1 it grows by one step on each SIGUSR1 instead, so a test decides when."""

import os
import signal
import time

step = int(os.environ.get("STEP_MB", "8"))
pause = float(os.environ.get("STEP_SECONDS", "0.25"))
limit = int(os.environ.get("MAX_MB", "256"))
on_signal = os.environ.get("GROW_ON_SIGNAL") == "1"
if on_signal:
    signal.signal(signal.SIGUSR1, lambda *_: None)
    print(f"hog pid={os.getpid()}", flush=True)  # the shell above it would die of SIGUSR1
held = []
while len(held) * step < limit:
    held.append(bytearray(step * 1024 * 1024))  # bytearray pages are written: resident
    print(f"holding {len(held) * step} MB", flush=True)
    if on_signal:
        signal.pause()
    else:
        time.sleep(pause)
while True:
    time.sleep(3600)
