"""Eats memory: grows by $STEP_MB every $STEP_SECONDS up to $MAX_MB, then holds it."""

import os
import time

step = int(os.environ.get("STEP_MB", "8"))
pause = float(os.environ.get("STEP_SECONDS", "0.25"))
limit = int(os.environ.get("MAX_MB", "256"))
held = []
while len(held) * step < limit:
    held.append(bytearray(step * 1024 * 1024))  # bytearray pages are written: resident
    print(f"holding {len(held) * step} MB", flush=True)
    time.sleep(pause)
while True:
    time.sleep(3600)
