"""A background worker for dynomesh: prints a heartbeat line every few seconds until SIGTERM."""

import os
import signal
import threading

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())

dyno = os.environ.get("DYNO", "worker.?")
greeting = os.environ.get("GREETING", "Hello")
beats = 0
print(f"{dyno} started", flush=True)
while not stop.wait(5):
    beats += 1
    print(f"{dyno}: {greeting}, heartbeat {beats}", flush=True)
print(f"{dyno} stopping after {beats} heartbeats", flush=True)
