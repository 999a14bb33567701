"""A moto server on a free loopback port: S3 (and any AWS API moto has) through the real protocol.

moto keeps its state in this test process, shared by every bucket; tests make a bucket of their
own (`MotoServer.bucket`) so they never see each other's objects.
"""

from __future__ import annotations

import itertools
import os
import tempfile
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
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def start(self) -> MotoServer:
        self._server.start()  # returns once it listens
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

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


def serve() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()
