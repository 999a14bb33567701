"""Writes $LINES lines as fast as it can and a 25000-byte line, then binds $PORT (if it has one)."""

import os
import signal
import socket
import sys

count = int(os.environ.get("LINES", "1000"))
out = sys.stdout
for i in range(count):
    out.write(f"line {i} " + "x" * 200 + "\n")
out.write("L" * 25000 + "\n")
out.write(f"done writing {count} lines\n")
out.flush()
if "PORT" in os.environ:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", int(os.environ["PORT"])))
    server.listen()
signal.pause()
