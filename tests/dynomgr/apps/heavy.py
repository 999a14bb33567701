"""A worker holding 2 GiB of resident memory that exits at once on SIGTERM, leaving the kernel
to free that memory: for a while after its last thread stopped running, the process is still
leaving its cgroup."""

import os
import signal
import time

ballast = b"x" * (2048 * 1024 * 1024)  # written, so resident
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print(f"heavy worker up ({len(ballast) >> 20} MiB)", flush=True)
while True:
    time.sleep(60)
