"""A moto server on a free loopback port: S3 (and any AWS API moto has) through the real protocol.

moto keeps its state in this test process, shared by every bucket; tests make a bucket of their
own (`MotoServer.bucket`) so they never see each other's objects.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator

# What an AWS SDK in a test (here or in a child process) is told: moto's fake account, and no
# real profile, config file or instance metadata service to go and ask.
_NOWHERE = os.path.join(tempfile.gettempdir(), "dynomesh-tests-no-aws-config")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": _NOWHERE, "AWS_SHARED_CREDENTIALS_FILE": _NOWHERE,
    "AWS_EC2_METADATA_DISABLED": "true",
}
NO_CREDENTIALS_ENV = {name: value for name, value in AWS_ENV.items()
                      if not name.startswith("AWS_ACCESS") and "SECRET" not in name}

_names = itertools.count(1)


class MotoServer:
    """A moto server at `url`, as a test sees it: buckets of its own, and boto3 to look."""

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self):
        """A plain (blocking) boto3 S3 client of moto's, for a test to look and meddle."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self) -> str:
        name = f"slugs-{os.getpid()}-{next(_names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def pending_uploads(self, bucket: str) -> list[str]:
        """Keys with a multipart upload begun and neither completed nor aborted."""
        listed = self.client().list_multipart_uploads(Bucket=bucket)
        return [upload["Key"] for upload in listed.get("Uploads", [])]


@contextlib.contextmanager
def serve() -> Iterator[MotoServer]:
    """moto in a thread of this process (its state is this process's)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once it listens
    try:
        host, port = server.get_host_and_port()
        yield MotoServer(f"http://{host}:{port}")
    finally:
        server.stop()


def serve_checking_credentials() -> contextlib.AbstractContextManager[MotoServer]:
    """moto that checks credentials against its IAM, where none of the tests' exist: only
    its first request (making a bucket) goes unchecked."""
    return serve_in_a_process(INITIAL_NO_AUTH_ACTION_COUNT="1")


@contextlib.contextmanager
def serve_in_a_process(**env: str) -> Iterator[MotoServer]:
    """moto in a process of its own (no GIL shared with the caller), `env` added to its
    environment."""
    from tests.conftest import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        for line in process.stdout:  # until it says it listens, or exits
            if f"Running on http://127.0.0.1:{port}" in line:
                break
        else:
            raise RuntimeError(f"moto server exited with {process.wait()}")
        # Its request log goes on into the pipe; drained so it never blocks on a full one.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(30)
