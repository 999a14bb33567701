"""Slugs in an S3 bucket (`dynomesh control --slug-store s3://BUCKET/PREFIX`), through aioboto3.

An upload is spooled to this node's disk (to check the archive and its Procfile, as the local
store does) while its parts already stream to S3 (controlplane/s3multipart.py); the object
becomes visible under `PREFIX/<slug id>.tar.gz` only once the checks passed, and only then is
the slug recorded, with its SHA-256, in the store. Dyno managers need no AWS credentials: the
control plane's slug URL answers 307 with a presigned GET URL valid for a few minutes, and the
agent verifies the SHA-256 of what it downloaded (R17 when it differs).

Credentials come from the usual AWS sources (environment, shared config and profile, an
instance role); `--slug-store-endpoint` points at an S3-compatible service or moto.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane.s3multipart import MultipartWriter
from controlplane.slugstore import (Incoming, ReceivedSlug, Redirect, SlugStoreError, inspect,
                                    new_slug_id, spool)

log = logging.getLogger(__name__)

# S3 bucket names (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# A presigned URL is used at once by the agent that asked for it; a later start asks again.
URL_LIFETIME = 900
# A multipart upload older than this at start-up was left by a crash (no upload runs a day).
STALE_UPLOAD = datetime.timedelta(days=1)
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # without leading or trailing '/'; may be empty

    @classmethod
    def parse(cls, text: str) -> S3Location:
        if not text.startswith("s3://"):
            raise ValueError(f"--slug-store must be s3://BUCKET/PREFIX, got {text!r} (leave it "
                             "out to keep slugs in the home directory)")
        bucket, _, prefix = text[len("s3://"):].partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"--slug-store {text}: {bucket!r} is not an S3 bucket name (3 to 63 "
                             "lowercase letters, digits, '.' and '-')")
        prefix = prefix.strip("/")
        if "//" in prefix:
            raise ValueError(f"--slug-store {text}: the prefix has an empty path segment")
        return cls(bucket, prefix)

    def key(self, slug_id: str) -> str:
        name = f"{slug_id}.tar.gz"
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def key_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class S3Settings:
    location: S3Location
    endpoint_url: str | None = None  # None: AWS itself (or AWS_ENDPOINT_URL_S3)
    region: str | None = None  # None: AWS_REGION / AWS_DEFAULT_REGION / the profile's
    part_size: int = 8 * 2**20  # slugs above this go up as multipart uploads


def stale_uploads(uploads: list[dict[str, Any]],
                  now: datetime.datetime) -> list[dict[str, Any]]:
    """The multipart uploads (as ListMultipartUploads gives them) begun over STALE_UPLOAD ago."""
    return [upload for upload in uploads if now - upload["Initiated"] > STALE_UPLOAD]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class S3SlugStore:
    def __init__(self, settings: S3Settings, spool_dir: Path, *,
                 clock: Callable[[], datetime.datetime] = _utc_now) -> None:
        self._clock = clock
        self.settings = settings
        self.location = settings.location
        self.incoming = Incoming(spool_dir)
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    def describe(self) -> str:
        where = f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else ""
        return f"slugs in {self.location}{where}"

    async def start(self) -> None:
        self.incoming.prepare()
        try:
            self._client = await self._stack.enter_async_context(self._new_client())
            await self._client.head_bucket(Bucket=self.location.bucket)
        except Exception as exc:
            await self.close()
            raise SlugStoreError(self._explain(exc)) from exc
        await self._abort_stale_uploads()

    def _new_client(self):
        import aioboto3
        from aiobotocore.config import AioConfig

        session = aioboto3.Session(region_name=self.settings.region)
        # Path-style addressing for S3-compatibles and moto, whose buckets have no DNS names.
        style = "path" if self.settings.endpoint_url else "auto"
        config = AioConfig(signature_version="s3v4", s3={"addressing_style": style},
                           connect_timeout=10, read_timeout=60,
                           retries={"max_attempts": 4, "mode": "standard"})
        return session.client("s3", endpoint_url=self.settings.endpoint_url, config=config)

    def _explain(self, exc: Exception) -> str:
        """What went wrong reaching the bucket, and what to do about it."""
        from botocore.exceptions import (ClientError, EndpointConnectionError,
                                         NoCredentialsError, PartialCredentialsError)

        bucket, where = self.location.bucket, f"--slug-store {self.location}"
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return (f"{where}: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role")
        if isinstance(exc, EndpointConnectionError):
            return (f"{where}: cannot reach S3 at {exc.kwargs.get('endpoint_url')}: check "
                    "--slug-store-endpoint and the network")
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            if code in ("404", "NoSuchBucket"):
                return (f"{where}: the bucket {bucket!r} does not exist: create it (aws s3 mb "
                        f"s3://{bucket}) or name an existing one")
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return (f"{where}: access to the bucket {bucket!r} was refused ({code}): check "
                        "the AWS credentials and that they allow s3:ListBucket, s3:GetObject, "
                        "s3:PutObject, s3:DeleteObject and s3:AbortMultipartUpload on it")
            if code in ("301", "400", "PermanentRedirect", "AuthorizationHeaderMalformed"):
                headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                region = headers.get("x-amz-bucket-region")  # S3 names it on a 301
                hint = (f"--slug-store-region {region}" if region
                        else "its region with --slug-store-region")
                return (f"{where}: the bucket {bucket!r} answered {code}: it is in another "
                        f"region than the one asked; give {hint}")
            return f"{where}: S3 answered {code} for the bucket {bucket!r}: {exc}"
        return f"{where}: S3 cannot be used: {type(exc).__name__}: {exc}"

    async def _abort_stale_uploads(self) -> None:
        """Abort multipart uploads under our prefix left by a node that crashed mid-upload
        (younger ones may be another control node's, still running). Housekeeping: a failure
        is logged and the node starts anyway."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            listed = await self._client.list_multipart_uploads(
                Bucket=self.location.bucket, Prefix=self.location.key_prefix)
            for upload in stale_uploads(listed.get("Uploads", []), self._clock()):
                await self._client.abort_multipart_upload(
                    Bucket=self.location.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                log.warning("slugs: aborted a multipart upload left since %s: s3://%s/%s",
                            upload["Initiated"], self.location.bucket, upload["Key"])
        except (ClientError, BotoCoreError) as exc:
            log.warning("slugs: could not look for multipart uploads left by a crash in %s "
                        "(%s); a bucket lifecycle rule (AbortIncompleteMultipartUpload) "
                        "removes them", self.location, exc)

    async def receive(self, chunks: AsyncIterator[bytes], *, expected_sha256: str,
                      max_bytes: int) -> ReceivedSlug:
        from botocore.exceptions import BotoCoreError, ClientError

        slug_id = new_slug_id()
        temporary = self.incoming.path(slug_id)
        key = self.location.key(slug_id)
        writer = MultipartWriter(self._client, self.location.bucket, key,
                                 self.settings.part_size)
        try:
            with open(temporary, "wb") as handle:
                actual, size = await spool(chunks, handle, expected_sha256=expected_sha256,
                                           max_bytes=max_bytes, also=writer.write)
            process_types = await asyncio.to_thread(inspect, temporary)
            await writer.complete()
        except (ClientError, BotoCoreError) as exc:
            await self._abort(writer, key)
            raise SlugStoreError(f"the slug could not be stored in {self.location}: {exc}: "
                                 "deploy again; if it persists, check S3") from exc
        except BaseException:
            await self._abort(writer, key)
            raise
        finally:
            temporary.unlink(missing_ok=True)
        return ReceivedSlug(slug_id, f"sha256:{actual}", size, process_types)

    async def _abort(self, writer: MultipartWriter, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await writer.abort()
        except (ClientError, BotoCoreError) as exc:
            # Not fatal to anyone: the parts are invisible; the next start-up sweep (after a
            # day) or a bucket lifecycle rule removes them.
            log.warning("slugs: could not abort the upload of s3://%s/%s: %s",
                        self.location.bucket, key, exc)

    async def locate(self, slug_id: str) -> Redirect:
        url = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.location.bucket,
                                  "Key": self.location.key(slug_id)},
            ExpiresIn=URL_LIFETIME)
        return Redirect(url)

    async def remove(self, slug_ids: list[str]) -> None:
        """Delete slugs no release needs any more (after the store forgot them)."""
        from botocore.exceptions import BotoCoreError, ClientError

        keys = [self.location.key(slug_id) for slug_id in slug_ids]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            try:
                answer = await self._client.delete_objects(
                    Bucket=self.location.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
                failed = {error["Key"]: error.get("Code") for error in answer.get("Errors", [])}
            except (ClientError, BotoCoreError) as exc:
                failed = dict.fromkeys(batch, str(exc))
            if failed:
                # Nothing refers to them any more: left behind, they only cost storage.
                log.warning("slugs: could not delete %d slug(s) from %s (%s); delete them by "
                            "hand: %s", len(failed), self.location,
                            ", ".join(sorted(set(map(str, failed.values())))),
                            " ".join(failed))

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()
