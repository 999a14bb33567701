"""Numbered lines forever, each written in two pieces a moment apart (so an agent that stops
reading may stop in the middle of one): `tick N part2`, every $PAUSE seconds."""

import os
import sys
import time

pause = float(os.environ.get("PAUSE", "0.01"))
out = sys.stdout
i = 0
while True:
    out.write(f"tick {i} ")
    out.flush()
    time.sleep(pause / 2)
    out.write("part2\n")
    out.flush()
    time.sleep(pause / 2)
    i += 1
