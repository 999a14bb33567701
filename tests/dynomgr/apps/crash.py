"""Crashes at boot."""

import sys

print("booting, then crashing", flush=True)
sys.exit("boom: cannot connect to the database")
