"""Streaming one object to S3 with bounded memory: one part filling, one on its way.

An object that stays under the part size goes up in one PutObject when it is complete; a bigger
one becomes a multipart upload whose parts are sent as they fill (S3 wants every part but the
last to be at least 5 MiB, and at most 10,000 parts), each while the next one fills, so the
client's upload and S3's do not wait for each other. Nothing is visible under the key until
`complete`; `abort` after a failure removes the parts S3 holds, so a failed upload leaves
nothing behind (and costs nothing).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dynomesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 2**20  # S3's lower bound for every part but the last
MAX_PARTS = 10_000


class MultipartWriter:
    def __init__(self, client: Any, bucket: str, key: str, part_size: int,
                 content_type: str = "application/gzip") -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least {MIN_PART_SIZE} bytes")
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._content_type = content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._sending: asyncio.Future[None] | None = None  # the part on its way, if any

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[:self._part_size])
            del self._buffer[:self._part_size]
            await self._send_part(part)

    async def _send_part(self, data: bytes) -> None:
        """Start sending `data` as the next part once the previous one has arrived."""
        await self._sent()
        if self._upload_id is None:
            created = await self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise ValueError(f"more than {MAX_PARTS} parts: raise the part size")
        self._parts.append({"PartNumber": number})
        self._sending = asyncio.ensure_future(self._upload_part(self._upload_id, number, data))

    async def _upload_part(self, upload_id: str, number: int, data: bytes) -> None:
        sent = await self._client.upload_part(Bucket=self._bucket, Key=self._key,
                                              UploadId=upload_id, PartNumber=number, Body=data)
        self._parts[number - 1]["ETag"] = sent["ETag"]

    async def _sent(self) -> None:
        """Wait for the part on its way; its failure is the upload's."""
        sending, self._sending = self._sending, None
        if sending is not None:
            await sending

    async def complete(self) -> None:
        """Make the object visible under its key (after the caller checked what it wrote)."""
        if self._upload_id is None:
            await self._client.put_object(Bucket=self._bucket, Key=self._key,
                                          Body=bytes(self._buffer),
                                          ContentType=self._content_type)
        else:
            if self._buffer or not self._parts:
                await self._send_part(bytes(self._buffer))
            await self._sent()
            await self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts})
        self._buffer.clear()

    async def abort(self) -> None:
        """Drop what was sent. Shielded: it must run even when the upload was cancelled."""
        self._buffer.clear()
        sending, self._sending = self._sending, None
        if sending is not None:
            # Settle it (cancelled, failed or done) before the upload it belongs to goes.
            try:
                await cancel_and_wait(sending)
            except Exception:  # a part that failed to send is dropped anyway
                pass
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        await asyncio.shield(self._client.abort_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=upload_id))
        log.info("slugs: aborted the multipart upload of s3://%s/%s", self._bucket, self._key)
