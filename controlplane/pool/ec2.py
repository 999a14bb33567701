"""The `ec2` pool provider: EC2 instances through aioboto3.

Each VM is one `RunInstances` call: from a launch template, or an AMI and instance type (with
an optional subnet and security groups; given with a template, they override its values), the
VM's user-data (`userdata.py`), and two tags that tie the instance to the pool:
`dynomesh:pool` (the pool's name) and `dynomesh:vm` (the VM id its agent registers under).
`DescribeInstances` filtered on the pool tag is how the pool learns what AWS runs; it never
adopts or terminates an instance it has no row for (`manager.py` reports those).

Credentials and the region come from the usual AWS sources (environment, shared config and
credentials files, an instance role), the endpoint from `endpoint_url` when given (a local
test server). botocore's own retries are off: the pool retries with its back-off and shows
each failure with AWS's error code, instead of a call that silently takes a minute.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from controlplane.pool.provider import Boot, Instance, ProviderError
from controlplane.pool.userdata import render

POOL_TAG = "dynomesh:pool"
VM_TAG = "dynomesh:vm"
# Error codes worth trying again soon (AWS's "retryable" families: throttling, capacity,
# server-side and network trouble). Anything else needs an operator; the pool still retries,
# at its longest back-off.
RETRYABLE = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled",
    "InsufficientInstanceCapacity", "InsufficientCapacity", "InternalError", "InternalFailure",
    "ServiceUnavailable", "Unavailable", "RequestTimeout", "EndpointConnectionError",
    "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
})
# Pages of DescribeInstances read at most (1000 instances a page): a bound, not a limit.
MAX_PAGES = 100
_LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


@dataclass(frozen=True)
class Ec2Settings:
    pool_name: str = "default"
    region: str | None = None  # None: AWS_REGION / AWS_DEFAULT_REGION / the config file
    endpoint_url: str | None = None  # None: AWS's own endpoint for the region
    launch_template: str | None = None  # lt-... (an id) or a name
    launch_template_version: str = "$Default"
    image_id: str | None = None
    instance_type: str | None = None
    subnet_id: str | None = None
    security_groups: tuple[str, ...] = ()
    # How a fresh instance gets dynomesh (the AMI needs Python 3.11 and pip; bake dynomesh
    # into the AMI and make this `true` to skip it).
    install_command: str = "python3 -m pip install --quiet 'dynomesh==0.1.0'"

    def __post_init__(self) -> None:
        if not self.launch_template and not (self.image_id and self.instance_type):
            raise ValueError("the ec2 pool needs --ec2-launch-template, or --ec2-ami and "
                             "--ec2-instance-type")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
                ("http://", "https://")):
            raise ValueError(f"--ec2-endpoint-url must be an http(s):// URL, got "
                             f"{self.endpoint_url!r}")
        if not self.pool_name or len(self.pool_name) > 128:
            raise ValueError("--pool-name must be 1 to 128 characters (it is a tag value)")


def _failure(exc: Exception, operation: str) -> ProviderError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or exc)
    else:  # botocore's own: no credentials, no region, the endpoint unreachable...
        code, message = type(exc).__name__, str(exc)
    return ProviderError(code, message, operation=operation, retryable=code in RETRYABLE)


def _tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or []}


class Ec2Provider:
    name = "ec2"
    can_launch = True

    def __init__(self, settings: Ec2Settings) -> None:
        import aioboto3
        from botocore.config import Config

        self.settings = settings
        self._session = aioboto3.Session(region_name=settings.region)
        self._config = Config(retries={"max_attempts": 1, "mode": "standard"},
                              connect_timeout=5, read_timeout=30)
        self._opened: Any = None  # the client's context manager, once made
        self._ec2: Any = None

    @asynccontextmanager
    async def _client(self, operation: str) -> AsyncIterator[Any]:
        """The provider's one EC2 client (made on first use: building one parses botocore's
        service model, a tenth of a second), with its errors turned into `ProviderError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self._opened is None:
                opening = self._session.client("ec2", endpoint_url=self.settings.endpoint_url,
                                               config=self._config)
                self._ec2 = await opening.__aenter__()
                self._opened = opening
            yield self._ec2
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, operation) from exc

    def run_parameters(self, boot: Boot) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {
            "MinCount": 1, "MaxCount": 1, "UserData": render(boot, s.install_command),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": POOL_TAG, "Value": s.pool_name}, {"Key": VM_TAG, "Value": boot.vm_id},
                {"Key": "Name", "Value": f"dynomesh-{boot.vm_id}"}]}]}
        if s.launch_template:
            key = ("LaunchTemplateId" if s.launch_template.startswith("lt-")
                   else "LaunchTemplateName")
            params["LaunchTemplate"] = {key: s.launch_template,
                                        "Version": s.launch_template_version}
        if s.image_id:
            params["ImageId"] = s.image_id
        if s.instance_type:
            params["InstanceType"] = s.instance_type
        if s.subnet_id:
            params["SubnetId"] = s.subnet_id
        if s.security_groups:
            params["SecurityGroupIds"] = list(s.security_groups)
        return params

    async def launch(self, boot: Boot) -> str:
        async with self._client("RunInstances") as ec2:
            answer = await ec2.run_instances(**self.run_parameters(boot))
        return answer["Instances"][0]["InstanceId"]

    async def describe(self) -> list[Instance]:
        found: list[Instance] = []
        async with self._client("DescribeInstances") as ec2:
            pages = ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": f"tag:{POOL_TAG}", "Values": [self.settings.pool_name]},
                {"Name": "instance-state-name", "Values": _LIVE_STATES + ["terminated"]}])
            count = 0
            async for page in pages:
                count += 1
                for reservation in page.get("Reservations", []):
                    for item in reservation.get("Instances", []):
                        found.append(Instance(
                            item["InstanceId"], item["State"]["Name"],
                            _tags(item.get("Tags")).get(VM_TAG), item.get("PrivateIpAddress"),
                            item.get("InstanceType"),
                            str(item["LaunchTime"]) if item.get("LaunchTime") else None))
                if count >= MAX_PAGES:
                    break
        return found

    async def terminate(self, instance_ids: list[str]) -> None:
        if not instance_ids:
            return
        try:
            async with self._client("TerminateInstances") as ec2:
                await ec2.terminate_instances(InstanceIds=instance_ids)
        except ProviderError as exc:
            if exc.code != "InvalidInstanceID.NotFound":
                raise  # an instance that is already gone is what we wanted

    async def close(self) -> None:
        if self._opened is not None:
            opened, self._opened = self._opened, None
            await opened.__aexit__(None, None, None)
