"""A pool VM's user-data: the cloud-init config that makes a fresh instance a dyno manager.

cloud-init reads `#cloud-config` followed by YAML; JSON is YAML too, so the body is written
with `json` (no YAML library, and nothing in a value can break the quoting). On first boot it
writes the VM's dynomgr token (mode 0600), a start script and a systemd unit, runs the install
command, and starts the unit, which restarts the agent if it dies (systemd's own back-off).

The start script is the one place that holds the agent's command line:

    exec dynomesh dynomgr --control URL[,URL] --token-file /etc/dynomesh/dynomgr.token \
        --capacity-mb N --address <this VM's first address> --data-dir /var/lib/dynomesh "$@"

Arguments given to the script come last, and argparse keeps the last of a repeated option:
that is how a test plays a VM on one machine (its own data dir and admin port) while running
the very script the instance would.
"""

from __future__ import annotations

import json
import shlex

from controlplane.pool.provider import Boot

TOKEN_PATH = "/etc/dynomesh/dynomgr.token"
SCRIPT_PATH = "/usr/local/bin/dynomesh-vm"
UNIT_PATH = "/etc/systemd/system/dynomesh-dynomgr.service"
DATA_DIR = "/var/lib/dynomesh"
HEADER = "#cloud-config\n"
# EC2 refuses user-data above 16 KB (before base64); ours is well under 2 KB.
MAX_BYTES = 16 * 1024

_UNIT = """[Unit]
Description=dynomesh dyno manager
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={script}
Restart=always
RestartSec=2
# SIGTERM drains the VM (its dynos stop within their grace); give it that long.
TimeoutStopSec=60
KillMode=mixed

[Install]
WantedBy=multi-user.target
"""


def start_script(boot: Boot) -> str:
    args = ["dynomesh", "dynomgr", "--control", ",".join(boot.control_urls),
            "--token-file", TOKEN_PATH, "--capacity-mb", str(boot.capacity_mb)]
    return (f"#!/bin/sh\n"
            f"# dynomesh pool VM {boot.vm_id}: starts its dyno manager (written by the control "
            f"plane).\n"
            f"# Arguments to this script come last and win (the last of a repeated option "
            f"counts).\n"
            f"set -eu\n"
            f"address=$(hostname -I 2>/dev/null | cut -d' ' -f1 || true)\n"
            f"exec {shlex.join(args)} --address \"${{address:-127.0.0.1}}\" "
            f"--data-dir {DATA_DIR} \"$@\"\n")


def render(boot: Boot, install_command: str) -> str:
    """The user-data for one VM."""
    config = {
        "write_files": [
            {"path": TOKEN_PATH, "permissions": "0600", "content": boot.token + "\n"},
            {"path": SCRIPT_PATH, "permissions": "0755", "content": start_script(boot)},
            {"path": UNIT_PATH, "permissions": "0644",
             "content": _UNIT.format(script=SCRIPT_PATH)},
        ],
        "runcmd": [
            ["sh", "-c", install_command],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "dynomesh-dynomgr.service"],
        ],
    }
    text = HEADER + json.dumps(config, indent=1) + "\n"
    if len(text.encode()) > MAX_BYTES:
        raise ValueError(f"the VM's user-data is {len(text.encode())} bytes, above EC2's "
                         f"{MAX_BYTES}: shorten the install command or the control URLs")
    return text
