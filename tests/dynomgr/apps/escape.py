"""Forks a grandchild that leaves the dyno's session (setsid) and ignores SIGTERM."""

import os
import signal
import sys
import time

child = os.fork()
if child == 0:
    grandchild = os.fork()
    if grandchild == 0:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"grandchild pid={os.getpid()} sid={os.getsid(0)}", flush=True)
        while True:
            time.sleep(3600)
    os._exit(0)  # the grandchild is now an orphan outside the dyno's process group
os.waitpid(child, 0)
print(f"leader pid={os.getpid()}", flush=True)
signal.pause()
